/* lib/fs_direct.c — O_DIRECT helpers: the alignment a file needs, aligned
 * buffers, and an up-front check that names the misaligned request.
 *
 * The alignment comes from statx(STATX_DIOALIGN) (Linux 6.1+; ext4, xfs,
 * btrfs, f2fs and block devices report it). A filesystem that answers the
 * mask with zero alignments does not support O_DIRECT on that file. Where
 * the kernel or filesystem does not answer: a block device's logical
 * sector size (BLKSSZGET), else 4096 for memory and I/O, which every Linux
 * filesystem with O_DIRECT accepts (their requirement is the logical block
 * size, at most the page size). These are plain syscalls made on the
 * calling thread: they do not block on I/O. */
#include <errno.h>
#include <fcntl.h>
#include <linux/fs.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/ioctl.h>
#include <sys/stat.h>

#include "zokio/fs.h"

#define DEFAULT_ALIGN 4096u

int zk_direct_align(int fd, size_t *mem_align, size_t *io_align)
{
	struct statx sx;
	if (statx(fd, "", AT_EMPTY_PATH, STATX_DIOALIGN | STATX_TYPE, &sx) != 0)
		return -errno;
	size_t mem = DEFAULT_ALIGN, io = DEFAULT_ALIGN;
	if (sx.stx_mask & STATX_DIOALIGN) {
		if (sx.stx_dio_mem_align == 0 || sx.stx_dio_offset_align == 0)
			return -EOPNOTSUPP;
		mem = sx.stx_dio_mem_align;
		io = sx.stx_dio_offset_align;
	} else if (S_ISBLK(sx.stx_mode)) {
		int ss = 0;
		if (ioctl(fd, BLKSSZGET, &ss) == 0 && ss > 0)
			mem = io = (size_t)ss;
	}
	if (mem_align)
		*mem_align = mem;
	if (io_align)
		*io_align = io;
	return 0;
}

void *zk_direct_alloc(size_t len, size_t align)
{
	if (align == 0)
		align = DEFAULT_ALIGN;
	if ((align & (align - 1)) != 0 || align < sizeof(void *))
		return NULL;
	if (len == 0)
		len = align;
	if (len > SIZE_MAX - align)
		return NULL;
	len = (len + align - 1) & ~(align - 1);
	void *p = NULL;
	if (posix_memalign(&p, align, len) != 0)
		return NULL;
	return p;
}

void zk_direct_free(void *p)
{
	free(p);
}

int zk_direct_check(int fd, const void *buf, size_t len, int64_t off)
{
	size_t mem, io;
	int r = zk_direct_align(fd, &mem, &io);
	if (r < 0)
		return r;
	if (((uintptr_t)buf & (mem - 1)) || (len & (io - 1)) || off < 0 ||
	    ((uint64_t)off & (io - 1)))
		return -EINVAL;
	return 0;
}
