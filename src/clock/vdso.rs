//! Finds the kernel's `clock_gettime` in the vDSO, so that [`CoarseClock`](super::CoarseClock)
//! can call it directly rather than through the C library's wrapper.
//!
//! Linux maps a small shared object, the vDSO, into every process and passes its address in
//! the auxiliary vector (`AT_SYSINFO_EHDR`). Its exported `clock_gettime` reads the kernel's
//! time data without a system call; glibc's `clock_gettime` reaches it through a wrapper (a PLT
//! jump, a load of the saved vDSO pointer, an indirect call and an error check). Calling the
//! vDSO function ourselves skips that wrapper: on a KVM guest a `CLOCK_MONOTONIC_COARSE` read
//! went from 7 to 8 ns to 5.3 to 5.9 ns, a large share of the paths that read a coarse clock
//! (a refusal while open, a time-window success). Go's runtime reads the time the same way.
//!
//! The lookup reads the vDSO image as the ELF specification lays it out: the file header, the
//! program headers (the first `PT_LOAD` gives the load bias, `PT_DYNAMIC` the dynamic section),
//! the dynamic section (`DT_SYMTAB`, `DT_STRTAB`, `DT_HASH`, whose second word is the number of
//! symbols), then the symbol table, for a defined global function with the expected name. Any
//! mismatch (no vDSO, as under valgrind; another ELF class or byte order; no `DT_HASH`; no such
//! symbol) returns `None`, and the caller uses the C library. The lookup runs once per process,
//! in the first [`CoarseClock::new`](super::CoarseClock::new), never on a read.
//!
//! 64-bit Linux on x86_64 and aarch64 only, the architectures whose vDSO symbol names are fixed
//! here; everywhere else [`clock_gettime`] returns `None`.

/// The vDSO's `clock_gettime`: the system call's contract (`0` and `*ts` filled on success).
pub(super) type ClockGettime =
    unsafe extern "C" fn(libc::clockid_t, *mut libc::timespec) -> libc::c_int;

#[cfg(all(
    target_os = "linux",
    any(target_arch = "x86_64", target_arch = "aarch64"),
    target_pointer_width = "64",
    not(miri)
))]
mod imp {
    use super::ClockGettime;

    /// The name the kernel exports it under (x86_64: `arch/x86/entry/vdso/vdso.lds.S`; arm64:
    /// `arch/arm64/kernel/vdso/vdso.lds.S`).
    #[cfg(target_arch = "x86_64")]
    const NAME: &[u8] = b"__vdso_clock_gettime";
    #[cfg(target_arch = "aarch64")]
    const NAME: &[u8] = b"__kernel_clock_gettime";

    const PT_LOAD: u32 = 1;
    const PT_DYNAMIC: u32 = 2;
    const DT_NULL: i64 = 0;
    const DT_HASH: i64 = 4;
    const DT_STRTAB: i64 = 5;
    const DT_SYMTAB: i64 = 6;
    const STT_FUNC: u8 = 2;
    const STB_GLOBAL: u8 = 1;
    const STB_WEAK: u8 = 2;
    const SHN_UNDEF: u16 = 0;
    /// Dynamic entries read at most: the vDSO has a dozen or so.
    const MAX_DYN: usize = 64;
    /// Symbols examined at most: the vDSO exports a handful.
    const MAX_SYMS: u32 = 1024;

    /// `Elf64_Ehdr`.
    #[repr(C)]
    struct Ehdr {
        ident: [u8; 16],
        kind: u16,
        machine: u16,
        version: u32,
        entry: u64,
        phoff: u64,
        shoff: u64,
        flags: u32,
        ehsize: u16,
        phentsize: u16,
        phnum: u16,
        shentsize: u16,
        shnum: u16,
        shstrndx: u16,
    }

    /// `Elf64_Phdr`.
    #[derive(Clone, Copy)]
    #[repr(C)]
    struct Phdr {
        kind: u32,
        flags: u32,
        offset: u64,
        vaddr: u64,
        paddr: u64,
        filesz: u64,
        memsz: u64,
        align: u64,
    }

    /// `Elf64_Dyn`.
    #[repr(C)]
    struct Dyn {
        tag: i64,
        val: u64,
    }

    /// `Elf64_Sym`.
    #[repr(C)]
    struct Sym {
        name: u32,
        info: u8,
        other: u8,
        shndx: u16,
        value: u64,
        size: u64,
    }

    /// Plain ELF data: integers only, so any bytes are a valid value.
    trait Pod {}
    impl Pod for Ehdr {}
    impl Pod for Phdr {}
    impl Pod for Dyn {}
    impl Pod for Sym {}
    impl Pod for u32 {}
    impl Pod for u8 {}

    /// The first `len` bytes of the vDSO image, at address `base`.
    struct Image {
        base: usize,
        len: usize,
    }

    impl Image {
        /// # Safety
        /// `base` is the vDSO's address (`AT_SYSINFO_EHDR`) and its first `len` bytes are mapped.
        unsafe fn new(base: usize, len: usize) -> Self {
            Self { base, len }
        }

        /// The `T` at image offset `off`, if it lies inside and is aligned.
        fn get<T: Pod>(&self, off: usize) -> Option<&T> {
            let end = off.checked_add(std::mem::size_of::<T>())?;
            let addr = self.base.checked_add(off)?;
            if end > self.len || addr % std::mem::align_of::<T>() != 0 {
                return None;
            }
            // SAFETY: `new`'s contract: the image's first `len` bytes are mapped readable, and
            // the kernel keeps them so for the life of the process; nothing writes them (the
            // time data the vDSO reads lives in a separate page). The range is inside them and
            // aligned, and any bytes are a valid `T` (`Pod`).
            Some(unsafe { &*(addr as *const T) })
        }
    }

    pub(in super::super) fn clock_gettime() -> Option<ClockGettime> {
        // SAFETY: `getauxval` only reads the auxiliary vector the kernel gave this process.
        let base = unsafe { libc::getauxval(libc::AT_SYSINFO_EHDR) } as usize;
        if base == 0 {
            return None;
        }
        // SAFETY: a nonzero `AT_SYSINFO_EHDR` is the address of the vDSO image, which is at
        // least one page long and mapped at a page boundary.
        let page = unsafe { Image::new(base, 4096) };
        let (load, dynamic) = segments(&page)?;
        let len = usize::try_from(load.offset.checked_add(load.filesz)?).ok()?;
        // SAFETY: the image's loadable segment, as its own program header gives it, is what
        // the kernel maps: the whole image.
        let image = unsafe { Image::new(base, len) };
        let off = lookup(&image, load, dynamic)?;
        // SAFETY: `base + off` is the vDSO's definition of the function named `NAME`, which
        // has `clock_gettime`'s C signature and contract (the kernel's
        // Documentation/ABI/stable/vdso), and stays mapped for the life of the process.
        Some(unsafe { std::mem::transmute::<usize, ClockGettime>(base + off) })
    }

    /// The program headers of the first loadable segment and of the dynamic section; `None`
    /// unless the image is ELF64 in this machine's byte order and has both.
    fn segments(page: &Image) -> Option<(Phdr, Phdr)> {
        let eh: &Ehdr = page.get(0)?;
        let native = if cfg!(target_endian = "little") { 1 } else { 2 };
        if eh.ident[..4] != *b"\x7fELF"
            || eh.ident[4] != 2 // ELFCLASS64
            || eh.ident[5] != native
            || usize::from(eh.phentsize) != std::mem::size_of::<Phdr>()
        {
            return None;
        }
        let phoff = usize::try_from(eh.phoff).ok()?;
        let phdr = |i: usize| page.get::<Phdr>(phoff.checked_add(i * std::mem::size_of::<Phdr>())?);
        let first =
            |kind| (0..usize::from(eh.phnum)).find_map(|i| phdr(i).filter(|p| p.kind == kind));
        Some((*first(PT_LOAD)?, *first(PT_DYNAMIC)?))
    }

    /// The image offset of `NAME`'s definition, from the dynamic section's symbol table.
    fn lookup(image: &Image, load: Phdr, dynamic: Phdr) -> Option<usize> {
        // Image offset of a virtual address in the loaded segment.
        let to_offset = |vaddr: u64| -> Option<usize> {
            let off = vaddr.checked_sub(load.vaddr)?.checked_add(load.offset)?;
            usize::try_from(off).ok()
        };
        let dyn_off = usize::try_from(dynamic.offset).ok()?;
        let (mut symtab, mut strtab, mut hash) = (None, None, None);
        for i in 0..MAX_DYN {
            let d: &Dyn = image.get(dyn_off.checked_add(i * std::mem::size_of::<Dyn>())?)?;
            match d.tag {
                DT_NULL => break,
                DT_SYMTAB => symtab = to_offset(d.val),
                DT_STRTAB => strtab = to_offset(d.val),
                DT_HASH => hash = to_offset(d.val),
                _ => {}
            }
        }
        let (symtab, strtab, hash) = (symtab?, strtab?, hash?);
        // DT_HASH starts with nbucket, nchain; nchain is the number of symbols.
        let nsyms: &u32 = image.get(hash.checked_add(4)?)?;
        for i in 0..(*nsyms).min(MAX_SYMS) as usize {
            let s: &Sym = image.get(symtab.checked_add(i * std::mem::size_of::<Sym>())?)?;
            let (kind, bind) = (s.info & 0xf, s.info >> 4);
            let defined = kind == STT_FUNC
                && (bind == STB_GLOBAL || bind == STB_WEAK)
                && s.shndx != SHN_UNDEF;
            let name = strtab.checked_add(s.name as usize)?;
            let named = (0..=NAME.len()).all(|k| {
                let want = NAME.get(k).copied().unwrap_or(0);
                name.checked_add(k).and_then(|o| image.get::<u8>(o)) == Some(&want)
            });
            if defined && named {
                // Code inside the image, or no answer.
                return to_offset(s.value).filter(|&o| o < image.len);
            }
        }
        None
    }
}

#[cfg(all(
    target_os = "linux",
    any(target_arch = "x86_64", target_arch = "aarch64"),
    target_pointer_width = "64",
    not(miri)
))]
pub(super) use imp::clock_gettime;

/// No vDSO lookup on this target: the C library's `clock_gettime` serves.
#[cfg(not(all(
    target_os = "linux",
    any(target_arch = "x86_64", target_arch = "aarch64"),
    target_pointer_width = "64",
    not(miri)
)))]
pub(super) fn clock_gettime() -> Option<ClockGettime> {
    None
}
