/*
 * Makes the kernel header blk_snap.h (copied byte for byte from shared/seeds) compile in userspace:
 * the header takes uuid_t from a kernel-only header, so a 16-byte struct stands in for it (the
 * layout the kernel uses), and the _IOW/_IOR macros come from <linux/ioctl.h>.
 */
#pragma once
#include <linux/types.h>
#include <linux/ioctl.h>
#ifndef __cplusplus
#include <assert.h> /* static_assert in C11 */
#endif

typedef struct {
	__u8 b[16];
} uuid_t;

#include "blk_snap.h"
