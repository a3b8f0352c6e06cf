/*
 * Prints the blksnap v1 ABI as the C compiler lays it out: every struct's size and field offsets,
 * and the 12 ioctl numbers, as JSON. test/blksnap/abi.test.ts compiles this with `cc` and checks
 * src/blksnap/abi.ts against it.
 */
#include <stddef.h>
#include <stdio.h>
#include "include/blk_snap_user.h"

static int first_struct = 1, first_field;

#define STRUCT(T)                                                                    \
	do {                                                                         \
		printf("%s\n    \"%s\": {\"size\": %zu, \"fields\": {", first_struct ? "" : ",", #T, \
		       sizeof(struct T));                                            \
		first_struct = 0;                                                    \
		first_field = 1;                                                     \
	} while (0)
#define FIELD(T, f)                                                                  \
	do {                                                                         \
		printf("%s\"%s\": %zu", first_field ? "" : ", ", #f, offsetof(struct T, f)); \
		first_field = 0;                                                     \
	} while (0)
#define END() printf("}}")
#define IOCTL(name, last) printf("    \"%s\": %lu%s\n", #name, (unsigned long)(name), last ? "" : ",")

int main(void)
{
	printf("{\n  \"structs\": {");
	STRUCT(blk_snap_version); FIELD(blk_snap_version, major); FIELD(blk_snap_version, minor);
	FIELD(blk_snap_version, revision); FIELD(blk_snap_version, build); END();
	STRUCT(blk_snap_dev_t); FIELD(blk_snap_dev_t, mj); FIELD(blk_snap_dev_t, mn); END();
	STRUCT(blk_snap_tracker_remove); FIELD(blk_snap_tracker_remove, dev_id); END();
	STRUCT(blk_snap_cbt_info); FIELD(blk_snap_cbt_info, dev_id); FIELD(blk_snap_cbt_info, blk_size);
	FIELD(blk_snap_cbt_info, device_capacity); FIELD(blk_snap_cbt_info, blk_count);
	FIELD(blk_snap_cbt_info, generation_id); FIELD(blk_snap_cbt_info, snap_number); END();
	STRUCT(blk_snap_tracker_collect); FIELD(blk_snap_tracker_collect, count);
	FIELD(blk_snap_tracker_collect, cbt_info_array); END();
	STRUCT(blk_snap_tracker_read_cbt_bitmap); FIELD(blk_snap_tracker_read_cbt_bitmap, dev_id);
	FIELD(blk_snap_tracker_read_cbt_bitmap, offset); FIELD(blk_snap_tracker_read_cbt_bitmap, length);
	FIELD(blk_snap_tracker_read_cbt_bitmap, buff); END();
	STRUCT(blk_snap_block_range); FIELD(blk_snap_block_range, sector_offset);
	FIELD(blk_snap_block_range, sector_count); END();
	STRUCT(blk_snap_tracker_mark_dirty_blocks); FIELD(blk_snap_tracker_mark_dirty_blocks, dev_id);
	FIELD(blk_snap_tracker_mark_dirty_blocks, count);
	FIELD(blk_snap_tracker_mark_dirty_blocks, dirty_blocks_array); END();
	STRUCT(blk_snap_snapshot_create); FIELD(blk_snap_snapshot_create, count);
	FIELD(blk_snap_snapshot_create, dev_id_array); FIELD(blk_snap_snapshot_create, id); END();
	STRUCT(blk_snap_snapshot_destroy); FIELD(blk_snap_snapshot_destroy, id); END();
	STRUCT(blk_snap_snapshot_append_storage); FIELD(blk_snap_snapshot_append_storage, id);
	FIELD(blk_snap_snapshot_append_storage, dev_id); FIELD(blk_snap_snapshot_append_storage, count);
	FIELD(blk_snap_snapshot_append_storage, ranges); END();
	STRUCT(blk_snap_snapshot_take); FIELD(blk_snap_snapshot_take, id); END();
	STRUCT(blk_snap_snapshot_collect); FIELD(blk_snap_snapshot_collect, count);
	FIELD(blk_snap_snapshot_collect, ids); END();
	STRUCT(blk_snap_image_info); FIELD(blk_snap_image_info, orig_dev_id);
	FIELD(blk_snap_image_info, image_dev_id); END();
	STRUCT(blk_snap_snapshot_collect_images); FIELD(blk_snap_snapshot_collect_images, id);
	FIELD(blk_snap_snapshot_collect_images, count);
	FIELD(blk_snap_snapshot_collect_images, image_info_array); END();
	STRUCT(blk_snap_snapshot_event); FIELD(blk_snap_snapshot_event, id);
	FIELD(blk_snap_snapshot_event, timeout_ms); FIELD(blk_snap_snapshot_event, code);
	FIELD(blk_snap_snapshot_event, time_label); FIELD(blk_snap_snapshot_event, data); END();
	STRUCT(blk_snap_event_low_free_space); FIELD(blk_snap_event_low_free_space, requested_nr_sect); END();
	STRUCT(blk_snap_event_corrupted); FIELD(blk_snap_event_corrupted, orig_dev_id);
	FIELD(blk_snap_event_corrupted, err_code); END();
	printf("\n  },\n  \"ioctls\": {\n");
	IOCTL(IOCTL_BLK_SNAP_VERSION, 0);
	IOCTL(IOCTL_BLK_SNAP_TRACKER_REMOVE, 0);
	IOCTL(IOCTL_BLK_SNAP_TRACKER_COLLECT, 0);
	IOCTL(IOCTL_BLK_SNAP_TRACKER_READ_CBT_MAP, 0);
	IOCTL(IOCTL_BLK_SNAP_TRACKER_MARK_DIRTY_BLOCKS, 0);
	IOCTL(IOCTL_BLK_SNAP_SNAPSHOT_CREATE, 0);
	IOCTL(IOCTL_BLK_SNAP_SNAPSHOT_DESTROY, 0);
	IOCTL(IOCTL_BLK_SNAP_SNAPSHOT_APPEND_STORAGE, 0);
	IOCTL(IOCTL_BLK_SNAP_SNAPSHOT_TAKE, 0);
	IOCTL(IOCTL_BLK_SNAP_SNAPSHOT_COLLECT, 0);
	IOCTL(IOCTL_BLK_SNAP_SNAPSHOT_COLLECT_IMAGES, 0);
	IOCTL(IOCTL_BLK_SNAP_SNAPSHOT_WAIT_EVENT, 1);
	printf("  }\n}\n");
	return 0;
}
