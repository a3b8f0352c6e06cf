// Compile-time check of the blksnap v1 ABI: the header as the kernel module compiles it, against
// the table in shared/docs/blksnap.md and the ioctl numbers src/blksnap/abi.ts uses. A mismatch
// fails the build. Nothing here is executed.
#include <cstddef>
#include "blk_snap_user.h"

#define SIZE(T, n) static_assert(sizeof(struct T) == (n), "sizeof " #T)
#define AT(T, f, n) static_assert(offsetof(struct T, f) == (n), "offsetof " #T "." #f)

SIZE(blk_snap_version, 8);
AT(blk_snap_version, major, 0);
AT(blk_snap_version, minor, 2);
AT(blk_snap_version, revision, 4);
AT(blk_snap_version, build, 6);

SIZE(blk_snap_dev_t, 8);
AT(blk_snap_dev_t, mj, 0);
AT(blk_snap_dev_t, mn, 4);

SIZE(blk_snap_tracker_remove, 8);
AT(blk_snap_tracker_remove, dev_id, 0);

SIZE(blk_snap_cbt_info, 48);
AT(blk_snap_cbt_info, dev_id, 0);
AT(blk_snap_cbt_info, blk_size, 8);
AT(blk_snap_cbt_info, device_capacity, 16);
AT(blk_snap_cbt_info, blk_count, 24);
AT(blk_snap_cbt_info, generation_id, 28);
AT(blk_snap_cbt_info, snap_number, 44);

SIZE(blk_snap_tracker_collect, 16);
AT(blk_snap_tracker_collect, count, 0);
AT(blk_snap_tracker_collect, cbt_info_array, 8);

SIZE(blk_snap_tracker_read_cbt_bitmap, 24);
AT(blk_snap_tracker_read_cbt_bitmap, dev_id, 0);
AT(blk_snap_tracker_read_cbt_bitmap, offset, 8);
AT(blk_snap_tracker_read_cbt_bitmap, length, 12);
AT(blk_snap_tracker_read_cbt_bitmap, buff, 16);

SIZE(blk_snap_block_range, 16);
AT(blk_snap_block_range, sector_offset, 0);
AT(blk_snap_block_range, sector_count, 8);

SIZE(blk_snap_tracker_mark_dirty_blocks, 24);
AT(blk_snap_tracker_mark_dirty_blocks, dev_id, 0);
AT(blk_snap_tracker_mark_dirty_blocks, count, 8);
AT(blk_snap_tracker_mark_dirty_blocks, dirty_blocks_array, 16);

SIZE(blk_snap_snapshot_create, 32);
AT(blk_snap_snapshot_create, count, 0);
AT(blk_snap_snapshot_create, dev_id_array, 8);
AT(blk_snap_snapshot_create, id, 16);

SIZE(blk_snap_snapshot_destroy, 16);
AT(blk_snap_snapshot_destroy, id, 0);
SIZE(blk_snap_snapshot_take, 16);
AT(blk_snap_snapshot_take, id, 0);

SIZE(blk_snap_snapshot_append_storage, 40);
AT(blk_snap_snapshot_append_storage, id, 0);
AT(blk_snap_snapshot_append_storage, dev_id, 16);
AT(blk_snap_snapshot_append_storage, count, 24);
AT(blk_snap_snapshot_append_storage, ranges, 32);

SIZE(blk_snap_snapshot_collect, 16);
AT(blk_snap_snapshot_collect, count, 0);
AT(blk_snap_snapshot_collect, ids, 8);

SIZE(blk_snap_image_info, 16);
AT(blk_snap_image_info, orig_dev_id, 0);
AT(blk_snap_image_info, image_dev_id, 8);

SIZE(blk_snap_snapshot_collect_images, 32);
AT(blk_snap_snapshot_collect_images, id, 0);
AT(blk_snap_snapshot_collect_images, count, 16);
AT(blk_snap_snapshot_collect_images, image_info_array, 24);

SIZE(blk_snap_snapshot_event, 4096);
AT(blk_snap_snapshot_event, id, 0);
AT(blk_snap_snapshot_event, timeout_ms, 16);
AT(blk_snap_snapshot_event, code, 20);
AT(blk_snap_snapshot_event, time_label, 24);
AT(blk_snap_snapshot_event, data, 32);

SIZE(blk_snap_event_low_free_space, 8);
AT(blk_snap_event_low_free_space, requested_nr_sect, 0);

SIZE(blk_snap_event_corrupted, 12);
AT(blk_snap_event_corrupted, orig_dev_id, 0);
AT(blk_snap_event_corrupted, err_code, 8);

static_assert(blk_snap_event_code_low_free_space == 0, "event code low_free_space");
static_assert(blk_snap_event_code_corrupted == 1, "event code corrupted");
static_assert(blk_snap_ioctl_end == 12, "12 controls");

// The numbers src/blksnap/abi.ts sends (IOCTL in abi.ts).
static_assert(IOCTL_BLK_SNAP_VERSION == 0x40085600u, "IOCTL_BLK_SNAP_VERSION");
static_assert(IOCTL_BLK_SNAP_TRACKER_REMOVE == 0x40085601u, "IOCTL_BLK_SNAP_TRACKER_REMOVE");
static_assert(IOCTL_BLK_SNAP_TRACKER_COLLECT == 0x40105602u, "IOCTL_BLK_SNAP_TRACKER_COLLECT");
static_assert(IOCTL_BLK_SNAP_TRACKER_READ_CBT_MAP == 0x80185603u, "IOCTL_BLK_SNAP_TRACKER_READ_CBT_MAP");
static_assert(IOCTL_BLK_SNAP_TRACKER_MARK_DIRTY_BLOCKS == 0x80185604u, "IOCTL_BLK_SNAP_TRACKER_MARK_DIRTY_BLOCKS");
static_assert(IOCTL_BLK_SNAP_SNAPSHOT_CREATE == 0x40205605u, "IOCTL_BLK_SNAP_SNAPSHOT_CREATE");
static_assert(IOCTL_BLK_SNAP_SNAPSHOT_DESTROY == 0x80105606u, "IOCTL_BLK_SNAP_SNAPSHOT_DESTROY");
static_assert(IOCTL_BLK_SNAP_SNAPSHOT_APPEND_STORAGE == 0x40285607u, "IOCTL_BLK_SNAP_SNAPSHOT_APPEND_STORAGE");
static_assert(IOCTL_BLK_SNAP_SNAPSHOT_TAKE == 0x80105608u, "IOCTL_BLK_SNAP_SNAPSHOT_TAKE");
static_assert(IOCTL_BLK_SNAP_SNAPSHOT_COLLECT == 0x40105609u, "IOCTL_BLK_SNAP_SNAPSHOT_COLLECT");
static_assert(IOCTL_BLK_SNAP_SNAPSHOT_COLLECT_IMAGES == 0x4020560au, "IOCTL_BLK_SNAP_SNAPSHOT_COLLECT_IMAGES");
static_assert(IOCTL_BLK_SNAP_SNAPSHOT_WAIT_EVENT == 0x5000560bu, "IOCTL_BLK_SNAP_SNAPSHOT_WAIT_EVENT");
