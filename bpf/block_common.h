// SPDX-License-Identifier: Apache-2.0
/* block_common.h: what both block layers (block.c on raw tracepoints, block_tp.c on
 * classic ones) share: the --ops selection of block ops (BLOCK_OP_MASK, bit n: op n). */
#ifndef AETHER_BLOCK_COMMON_H
#define AETHER_BLOCK_COMMON_H

#ifndef BLK_MAP_SIZE
#define BLK_MAP_SIZE 16384
#endif

static __always_inline int blk_op_wanted(u8 op)
{
#ifdef BLOCK_OP_MASK
    return (((u64)BLOCK_OP_MASK) >> (op & 63)) & 1;
#else
    return 1;
#endif
}

#endif /* AETHER_BLOCK_COMMON_H */
