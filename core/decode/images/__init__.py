"""Image formats, one module each: :mod:`.base` (PhysImage, Segment, the errors),
:mod:`.raw`, :mod:`.elf`, :mod:`.kdump` (with :mod:`.flat`, :mod:`.codecs` and the writer
:mod:`.kdump_write`), :mod:`.lime`, :mod:`.notes` (QEMU CPU notes, VMCOREINFO),
:mod:`.machine` (an emulated machine), and :mod:`.registry` (the image-format hook and
``auto``) with the built-in formats in :mod:`.builtin`. :mod:`pfnmap.decode.image` gathers
the public names."""
