/*
 * The guest program booted by scripts/qemu_fixtures/regen.py.
 *
 * It builds a small, varied user address space, prints where everything is, prints the READY
 * marker on the console and then spins in user mode, so that when QEMU is stopped the vCPU is
 * (most likely) running it and CR3 is its page-table root:
 *
 *   anon      64 KiB private anonymous memory, written before fork; after fork the parent
 *             writes only the first half again (COW copies, writable) and leaves the second
 *             half shared with the child (write-protected)
 *   zero      16 KiB private anonymous memory, only read: the shared zero page, read-only
 *   thp       4 MiB anonymous, madvise(MADV_HUGEPAGE), written: 2 MiB pages if THP allows
 *   vga       /dev/mem 0xa0000..0xbffff, MAP_SHARED read/write: remap_pfn_range (VM_PFNMAP),
 *             uncached PTEs filled at mmap time, no struct page behind them
 *   rom       /dev/mem 0xf0000..0xfffff, MAP_SHARED read-only
 *   priv      /dev/mem 0xc0000..0xc7fff, MAP_PRIVATE read/write: PFN ptes, one page written
 *             before fork (a COW copy: anonymous page in a VM_PFNMAP vma, the 2.6.15 case)
 *   child     a forked child that sleeps forever
 *
 * Built with `gcc -static -O2` (and `-m32` for the i386 kernels).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#define PAGE 4096UL

static void *map_devmem(int fd, unsigned long phys, size_t len, int prot, int flags,
                        const char *name)
{
    void *p = mmap(NULL, len, prot, flags, fd, (off_t)phys);
    if (p == MAP_FAILED) {
        printf("GUEST %s mmap(/dev/mem, 0x%lx) failed: %s\n", name, phys, strerror(errno));
        return NULL;
    }
    return p;
}

static void show(const char *name, void *p, size_t len)
{
    if (p)
        printf("GUEST map %s 0x%lx 0x%lx\n", name, (unsigned long)(uintptr_t)p,
               (unsigned long)len);
}

int main(void)
{
    volatile unsigned long sink = 0;
    setvbuf(stdout, NULL, _IONBF, 0);

    size_t anon_len = 16 * PAGE;
    char *anon = mmap(NULL, anon_len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
                      -1, 0);
    if (anon == MAP_FAILED) {
        perror("mmap anon");
        return 1;
    }
    memset(anon, 0x5a, anon_len);

    size_t zero_len = 4 * PAGE;
    char *zero = mmap(NULL, zero_len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
                      -1, 0);
    for (size_t i = 0; zero != MAP_FAILED && i < zero_len; i += PAGE)
        sink += zero[i];

    /* 4 MiB aligned to 2 MiB inside an 8 MiB reservation, for a transparent huge page. */
    size_t thp_len = 4UL << 20;
    char *thp = NULL;
    char *res = mmap(NULL, thp_len + (2UL << 20), PROT_READ | PROT_WRITE,
                     MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (res != MAP_FAILED) {
        thp = (char *)(((uintptr_t)res + (2UL << 20) - 1) & ~((2UL << 20) - 1));
        madvise(thp, thp_len, MADV_HUGEPAGE);
        for (size_t i = 0; i < thp_len; i += PAGE)
            thp[i] = 1;
    }

    char *vga = NULL, *rom = NULL, *priv = NULL;
    int fd = open("/dev/mem", O_RDWR | O_SYNC);
    if (fd < 0) {
        printf("GUEST open /dev/mem failed: %s\n", strerror(errno));
    } else {
        vga = map_devmem(fd, 0xa0000, 0x20000, PROT_READ | PROT_WRITE, MAP_SHARED, "vga");
        if (vga)
            vga[0] = 0x41; /* VGA text/graphics window: harmless */
        rom = map_devmem(fd, 0xf0000, 0x10000, PROT_READ, MAP_SHARED, "rom");
        if (rom)
            sink += rom[0xfff0];
        priv = map_devmem(fd, 0xc0000, 0x8000, PROT_READ | PROT_WRITE, MAP_PRIVATE, "priv");
        if (priv) {
            sink += priv[0];
            priv[PAGE] = 0x42; /* COW: an anonymous page in the VM_PFNMAP vma */
        }
    }

    pid_t child = fork();
    if (child == 0) {
        for (;;)
            pause();
    }
    /* Parent: re-dirty the first half of anon (COW break), leave the rest shared. */
    for (size_t i = 0; i < anon_len / 2; i += PAGE)
        anon[i] = 0x33;

    printf("GUEST pid %d child %d\n", (int)getpid(), (int)child);
    show("anon", anon, anon_len);
    show("zero", zero == MAP_FAILED ? NULL : zero, zero_len);
    show("thp", thp, thp_len);
    show("vga", vga, 0x20000);
    show("rom", rom, 0x10000);
    show("priv", priv, 0x8000);

    FILE *maps = fopen("/proc/self/maps", "r");
    if (maps) {
        char line[256];
        while (fgets(line, sizeof line, maps))
            printf("GUEST maps %s", line);
        fclose(maps);
    }
    printf("GUEST READY\n");

    /* Spin in user mode; the host stops the vCPU now. */
    for (;;)
        sink++;
    return 0;
}
