"""The kernel layer: Linux 2.6.15's mm as pfnmap models it.

Physical memory and struct page (:mod:`~pfnmap.kernel.physmem`), mm_struct and vmas
(:mod:`~pfnmap.kernel.mm`), page-table allocation and walks (:mod:`~pfnmap.kernel.pgtable`),
vm_normal_page's decision (:mod:`~pfnmap.kernel.normal_page`), mm/memory.c's paths
(:mod:`~pfnmap.kernel.memory`) and their bulk forms (:mod:`~pfnmap.kernel.fastpath`), the fault
handlers (:mod:`~pfnmap.kernel.fault`), mmap/munmap/mprotect (:mod:`~pfnmap.kernel.mmap`),
remap_pfn_range (:mod:`~pfnmap.kernel.remap`), the page cache and shmem
(:mod:`~pfnmap.kernel.files`), user copies (:mod:`~pfnmap.kernel.uaccess`), the eras' rules
(:mod:`~pfnmap.kernel.rules`) and the reports the kernel prints (:mod:`~pfnmap.kernel.reports`).

This layer imports only :mod:`pfnmap.arch` and :mod:`pfnmap.errors`; nothing here knows about
Machine, the decoder or the CLI.
"""
