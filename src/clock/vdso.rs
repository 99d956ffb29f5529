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
//! The lookup reads the vDSO image as the ELF specification lays it out, as the kernel's
//! Documentation/ABI/stable/vdso asks: the file header (ELF64, this machine's byte order and
//! architecture, a shared object), the program headers (one loadable segment at file offset 0,
//! whose virtual addresses give the load bias; the dynamic section), the dynamic section
//! (`DT_SYMTAB`, `DT_STRTAB`, `DT_HASH`, whose second word is the number of symbols,
//! `DT_VERSYM`, `DT_VERDEF`), then the symbol table, for a defined global function with the
//! expected name **and** symbol version (`__vdso_clock_gettime@LINUX_2.6` on x86_64,
//! `__kernel_clock_gettime@LINUX_2.6.39` on aarch64). Any mismatch (no vDSO, as under valgrind
//! or with `vdso=0`; a missing table; no such symbol) returns `None`, and the caller uses the C
//! library, which is always correct. The lookup runs once per process, in the first
//! [`CoarseClock::new`](super::CoarseClock::new), never on a read.
//!
//! 64-bit Linux on x86_64 and aarch64 only, the architectures whose names are fixed here;
//! everywhere else [`clock_gettime`] returns `None`.

/// `clock_gettime`'s signature. The vDSO's has the system call's contract (0 and `*ts` filled
/// on success, `-errno` on failure, `errno` untouched); the C library's returns -1 and sets
/// `errno` instead. Callers only rely on success.
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

    /// What to look for: the symbol, its version and the ELF machine (x86_64:
    /// `arch/x86/entry/vdso/vdso.lds.S`; arm64: `arch/arm64/kernel/vdso/vdso.lds.S`).
    pub(super) struct Wanted {
        pub(super) name: &'static [u8],
        pub(super) version: &'static [u8],
        pub(super) machine: u16,
    }

    #[cfg(target_arch = "x86_64")]
    pub(super) const WANTED: Wanted = Wanted {
        name: b"__vdso_clock_gettime",
        version: b"LINUX_2.6",
        machine: 62, // EM_X86_64
    };
    #[cfg(target_arch = "aarch64")]
    pub(super) const WANTED: Wanted = Wanted {
        name: b"__kernel_clock_gettime",
        version: b"LINUX_2.6.39",
        machine: 183, // EM_AARCH64
    };

    pub(super) const ET_DYN: u16 = 3;
    pub(super) const PT_LOAD: u32 = 1;
    pub(super) const PT_DYNAMIC: u32 = 2;
    pub(super) const DT_NULL: i64 = 0;
    pub(super) const DT_HASH: i64 = 4;
    pub(super) const DT_STRTAB: i64 = 5;
    pub(super) const DT_SYMTAB: i64 = 6;
    pub(super) const DT_VERSYM: i64 = 0x6fff_fff0;
    pub(super) const DT_VERDEF: i64 = 0x6fff_fffc;
    pub(super) const STT_FUNC: u8 = 2;
    pub(super) const STB_GLOBAL: u8 = 1;
    const STB_WEAK: u8 = 2;
    const SHN_UNDEF: u16 = 0;
    pub(super) const VER_FLG_BASE: u16 = 1;
    /// Dynamic entries, symbols and version definitions read at most: the vDSO has a handful
    /// of each.
    const MAX_ENTRIES: usize = 1024;

    /// `Elf64_Ehdr`.
    #[derive(Clone, Copy, Default)]
    #[repr(C)]
    pub(super) struct Ehdr {
        pub(super) ident: [u8; 16],
        pub(super) kind: u16,
        pub(super) machine: u16,
        pub(super) version: u32,
        pub(super) entry: u64,
        pub(super) phoff: u64,
        pub(super) shoff: u64,
        pub(super) flags: u32,
        pub(super) ehsize: u16,
        pub(super) phentsize: u16,
        pub(super) phnum: u16,
        pub(super) shentsize: u16,
        pub(super) shnum: u16,
        pub(super) shstrndx: u16,
    }

    /// `Elf64_Phdr`.
    #[derive(Clone, Copy, Default)]
    #[repr(C)]
    pub(super) struct Phdr {
        pub(super) kind: u32,
        pub(super) flags: u32,
        pub(super) offset: u64,
        pub(super) vaddr: u64,
        pub(super) paddr: u64,
        pub(super) filesz: u64,
        pub(super) memsz: u64,
        pub(super) align: u64,
    }

    /// `Elf64_Dyn`.
    #[derive(Clone, Copy, Default)]
    #[repr(C)]
    pub(super) struct Dyn {
        pub(super) tag: i64,
        pub(super) val: u64,
    }

    /// `Elf64_Sym`.
    #[derive(Clone, Copy, Default)]
    #[repr(C)]
    pub(super) struct Sym {
        pub(super) name: u32,
        pub(super) info: u8,
        pub(super) other: u8,
        pub(super) shndx: u16,
        pub(super) value: u64,
        pub(super) size: u64,
    }

    /// `Elf64_Verdef`.
    #[derive(Clone, Copy, Default)]
    #[repr(C)]
    pub(super) struct Verdef {
        pub(super) version: u16,
        pub(super) flags: u16,
        pub(super) ndx: u16,
        pub(super) cnt: u16,
        pub(super) hash: u32,
        pub(super) aux: u32,
        pub(super) next: u32,
    }

    /// `Elf64_Verdaux`.
    #[derive(Clone, Copy, Default)]
    #[repr(C)]
    pub(super) struct Verdaux {
        pub(super) name: u32,
        pub(super) next: u32,
    }

    // The ELF64 sizes, so no field is padded.
    const _: () = assert!(std::mem::size_of::<Ehdr>() == 64 && std::mem::size_of::<Phdr>() == 56);
    const _: () = assert!(std::mem::size_of::<Dyn>() == 16 && std::mem::size_of::<Sym>() == 24);
    const _: () = assert!(std::mem::size_of::<Verdef>() == 20);
    const _: () = assert!(std::mem::size_of::<Verdaux>() == 8);

    /// Plain data that any bytes are a valid value of.
    ///
    /// # Safety
    /// Implementors are `Copy` structs of integers (or integers), with no padding.
    pub(super) unsafe trait Pod: Copy {}
    // SAFETY: this and the impls below are for integers, or `repr(C)` structs of integers laid
    // out as the ELF64 definitions are, without padding.
    unsafe impl Pod for Ehdr {}
    // SAFETY: as above.
    unsafe impl Pod for Phdr {}
    // SAFETY: as above.
    unsafe impl Pod for Dyn {}
    // SAFETY: as above.
    unsafe impl Pod for Sym {}
    // SAFETY: as above.
    unsafe impl Pod for Verdef {}
    // SAFETY: as above.
    unsafe impl Pod for Verdaux {}
    // SAFETY: as above.
    unsafe impl Pod for u32 {}
    // SAFETY: as above.
    unsafe impl Pod for u16 {}
    // SAFETY: as above.
    unsafe impl Pod for u8 {}

    /// `len` readable bytes at address `base`: an ELF image.
    pub(super) struct Image {
        base: usize,
        len: usize,
    }

    impl Image {
        /// # Safety
        /// The `len` bytes at `base` are readable, and unchanged, for as long as the `Image`
        /// lives.
        pub(super) unsafe fn new(base: usize, len: usize) -> Self {
            Self { base, len }
        }

        /// The `T` at offset `off`, if it lies inside.
        fn get<T: Pod>(&self, off: usize) -> Option<T> {
            let end = off.checked_add(std::mem::size_of::<T>())?;
            if end > self.len {
                return None;
            }
            let addr = self.base.checked_add(off)?;
            // SAFETY: the range lies inside the `len` readable bytes `new`'s contract promises,
            // and any bytes are a valid `T` (`Pod`); the read copies them, unaligned.
            Some(unsafe { std::ptr::read_unaligned(addr as *const T) })
        }

        /// Whether the NUL-terminated string at `off` is `want`.
        fn str_is(&self, off: usize, want: &[u8]) -> bool {
            (0..=want.len()).all(|k| {
                let expected = want.get(k).copied().unwrap_or(0);
                off.checked_add(k).and_then(|o| self.get::<u8>(o)) == Some(expected)
            })
        }
    }

    pub(in super::super) fn clock_gettime() -> Option<ClockGettime> {
        // SAFETY: `getauxval` only reads the auxiliary vector the kernel gave this process.
        let base = unsafe { libc::getauxval(libc::AT_SYSINFO_EHDR) } as usize;
        if base == 0 {
            return None;
        }
        // SAFETY: a nonzero `AT_SYSINFO_EHDR` is the address of the vDSO, which the kernel maps
        // page-aligned, readable and at least one page (4096 bytes or more) long for the life of
        // the process; nothing writes it (the time data it reads lives in other pages).
        let page = unsafe { Image::new(base, 4096) };
        let len = loaded_len(&page)?;
        // SAFETY: as above, and the kernel maps the whole vDSO file (x86: `vdso2c`; arm64:
        // `vdso_start..vdso_end`), of which the loadable segment, at file offset 0, is a prefix.
        let image = unsafe { Image::new(base, len) };
        let off = find(&image, &WANTED)?;
        let addr = std::ptr::with_exposed_provenance::<()>(base.checked_add(off)?);
        // SAFETY: `addr` is the vDSO's definition of the function named and versioned as
        // `WANTED` says, which has `clock_gettime`'s C signature (the kernel's
        // Documentation/ABI/stable/vdso) and stays mapped for the life of the process.
        Some(unsafe { std::mem::transmute::<*const (), ClockGettime>(addr) })
    }

    /// The file header, if the image is an ELF64 shared object for this machine.
    fn header(image: &Image, want: &Wanted) -> Option<Ehdr> {
        let eh: Ehdr = image.get(0)?;
        let native = if cfg!(target_endian = "little") { 1 } else { 2 };
        let ok = eh.ident[..4] == *b"\x7fELF"
            && eh.ident[4] == 2 // ELFCLASS64
            && eh.ident[5] == native
            && eh.kind == ET_DYN
            && eh.machine == want.machine
            && usize::from(eh.phentsize) == std::mem::size_of::<Phdr>();
        ok.then_some(eh)
    }

    /// The first program header of `kind`.
    fn segment(image: &Image, eh: &Ehdr, kind: u32) -> Option<Phdr> {
        let phoff = usize::try_from(eh.phoff).ok()?;
        (0..usize::from(eh.phnum)).find_map(|i| {
            let p: Phdr = image.get(phoff.checked_add(i * std::mem::size_of::<Phdr>())?)?;
            (p.kind == kind).then_some(p)
        })
    }

    /// The length of the loadable segment, read from the image's first bytes (`page`): the
    /// bytes the lookup may read. `None` unless it starts at file offset 0 and is all file
    /// (as the kernel builds every vDSO).
    pub(super) fn loaded_len(page: &Image) -> Option<usize> {
        let eh = header(page, &WANTED)?;
        let load = segment(page, &eh, PT_LOAD)?;
        if load.offset != 0 || load.filesz != load.memsz {
            return None;
        }
        usize::try_from(load.filesz).ok()
    }

    /// The offset in `image` of the defined global function named and versioned as `want`.
    pub(super) fn find(image: &Image, want: &Wanted) -> Option<usize> {
        let eh = header(image, want)?;
        let load = segment(image, &eh, PT_LOAD)?;
        let dynamic = segment(image, &eh, PT_DYNAMIC)?;
        // Image offset of a virtual address in the loaded segment.
        let to_offset = |vaddr: u64| -> Option<usize> {
            let off = vaddr.checked_sub(load.vaddr)?.checked_add(load.offset)?;
            usize::try_from(off).ok()
        };
        let dyn_off = usize::try_from(dynamic.offset).ok()?;
        let (mut symtab, mut strtab, mut hash, mut versym, mut verdef) =
            (None, None, None, None, None);
        for i in 0..MAX_ENTRIES {
            let d: Dyn = image.get(dyn_off.checked_add(i * std::mem::size_of::<Dyn>())?)?;
            let slot = match d.tag {
                DT_NULL => break,
                DT_SYMTAB => &mut symtab,
                DT_STRTAB => &mut strtab,
                DT_HASH => &mut hash,
                DT_VERSYM => &mut versym,
                DT_VERDEF => &mut verdef,
                _ => continue,
            };
            *slot = Some(to_offset(d.val)?);
        }
        let (symtab, strtab, hash) = (symtab?, strtab?, hash?);
        let (versym, verdef) = (versym?, verdef?);
        // DT_HASH starts with nbucket, nchain; nchain is the number of symbols.
        let nsyms: u32 = image.get(hash.checked_add(4)?)?;
        for i in 0..(nsyms as usize).min(MAX_ENTRIES) {
            let s: Sym = image.get(symtab.checked_add(i * std::mem::size_of::<Sym>())?)?;
            let (kind, bind) = (s.info & 0xf, s.info >> 4);
            let defined = kind == STT_FUNC
                && (bind == STB_GLOBAL || bind == STB_WEAK)
                && s.shndx != SHN_UNDEF;
            if !defined || !image.str_is(strtab.checked_add(s.name as usize)?, want.name) {
                continue;
            }
            let ver: u16 = image.get(versym.checked_add(2 * i)?)?;
            if version_is(image, verdef, strtab, ver & 0x7fff, want.version) {
                // Code inside the image, or no answer.
                return to_offset(s.value).filter(|&o| o < image.len);
            }
        }
        None
    }

    /// Whether version index `ndx` is defined (in the chain at `verdef`) with the name `want`.
    fn version_is(image: &Image, verdef: usize, strtab: usize, ndx: u16, want: &[u8]) -> bool {
        let mut off = verdef;
        for _ in 0..MAX_ENTRIES {
            let Some(vd) = image.get::<Verdef>(off) else {
                return false;
            };
            if vd.ndx == ndx && vd.flags & VER_FLG_BASE == 0 {
                let aux = off
                    .checked_add(vd.aux as usize)
                    .and_then(|a| image.get::<Verdaux>(a));
                return aux.is_some_and(|a| {
                    strtab
                        .checked_add(a.name as usize)
                        .is_some_and(|name| image.str_is(name, want))
                });
            }
            match off.checked_add(vd.next as usize) {
                Some(next) if vd.next != 0 => off = next,
                _ => return false,
            }
        }
        false
    }

    #[cfg(test)]
    mod tests {
        //! The lookup against hand-built images: a load address other than 0 (as x86_64
        //! kernels before 3.16 linked the vDSO), decoys that a looser match would take, and
        //! images missing a table or built for another machine.
        use super::*;

        /// A symbol of a built image: name, `st_info`, section, version index.
        type SymSpec = (&'static [u8], u8, u16, u16);

        const STT_OBJECT: u8 = 1;
        const STB_LOCAL: u8 = 0;
        const GLOBAL_FUNC: u8 = STB_GLOBAL << 4 | STT_FUNC;
        /// Version indices: 1 is the file's own (base) entry, 2 the wanted version, 3 another.
        const WANTED_VER: u16 = 2;
        const OTHER_VER: u16 = 3;

        /// Appends `v`'s bytes.
        fn put<T: Pod>(buf: &mut Vec<u8>, v: T) {
            // SAFETY: `T: Pod` has no padding, so all `size_of::<T>()` bytes of `v` are
            // initialised; the slice lives only for this copy.
            let bytes = unsafe {
                std::slice::from_raw_parts((&v as *const T).cast::<u8>(), std::mem::size_of::<T>())
            };
            buf.extend_from_slice(bytes);
        }

        fn pad_to(buf: &mut Vec<u8>, align: usize) {
            buf.resize(buf.len().next_multiple_of(align), 0);
        }

        struct Elf {
            /// The virtual address of file offset 0.
            bias: u64,
            syms: Vec<SymSpec>,
            byte_order: u8,
            machine: u16,
            hash: bool,
            versions: bool,
        }

        impl Elf {
            fn new(syms: Vec<SymSpec>) -> Self {
                Self {
                    bias: 0xffff_ffff_ff70_0000,
                    syms,
                    byte_order: if cfg!(target_endian = "little") { 1 } else { 2 },
                    machine: WANTED.machine,
                    hash: true,
                    versions: true,
                }
            }

            /// The image, and the offset the code of symbol `k` (0-based in `syms`) is at.
            fn build(&self) -> (Vec<u8>, impl Fn(usize) -> usize + use<>) {
                let n = self.syms.len() + 1; // with the null symbol
                // The string table: names, then version names.
                let mut strtab = vec![0u8];
                let mut add_str = |s: &[u8]| {
                    let off = strtab.len() as u32;
                    strtab.extend_from_slice(s);
                    strtab.push(0);
                    off
                };
                let names: Vec<u32> = self.syms.iter().map(|s| add_str(s.0)).collect();
                let vernames = [
                    add_str(b"linux-vdso.so.1"),
                    add_str(WANTED.version),
                    add_str(b"LINUX_9.9"),
                ];
                // Offsets, in order: header, 2 program headers, dynamic, hash, symbols,
                // versym, verdef, strings, code.
                let dyn_off = 64 + 2 * 56;
                let dyn_len = 7 * 16;
                let hash_off = dyn_off + dyn_len;
                let sym_off = (hash_off + 4 * (2 + 1 + n)).next_multiple_of(8);
                let versym_off = sym_off + 24 * n;
                let verdef_off = (versym_off + 2 * n).next_multiple_of(4);
                let str_off = verdef_off + 3 * 28;
                let code_off = (str_off + strtab.len()).next_multiple_of(16);
                let total = code_off + 16 * n;
                let va = |off: usize| self.bias + off as u64;

                let mut b = Vec::new();
                let mut ident = [0u8; 16];
                ident[..4].copy_from_slice(b"\x7fELF");
                ident[4] = 2;
                ident[5] = self.byte_order;
                ident[6] = 1;
                put(
                    &mut b,
                    Ehdr {
                        ident,
                        kind: ET_DYN,
                        machine: self.machine,
                        version: 1,
                        phoff: 64,
                        ehsize: 64,
                        phentsize: 56,
                        phnum: 2,
                        ..Ehdr::default()
                    },
                );
                let whole = total as u64;
                put(
                    &mut b,
                    Phdr {
                        kind: PT_LOAD,
                        vaddr: self.bias,
                        filesz: whole,
                        memsz: whole,
                        ..Phdr::default()
                    },
                );
                put(
                    &mut b,
                    Phdr {
                        kind: PT_DYNAMIC,
                        offset: dyn_off as u64,
                        vaddr: va(dyn_off),
                        ..Phdr::default()
                    },
                );
                let mut dyns = vec![(DT_SYMTAB, va(sym_off)), (DT_STRTAB, va(str_off))];
                if self.hash {
                    dyns.push((DT_HASH, va(hash_off)));
                }
                if self.versions {
                    dyns.extend([(DT_VERSYM, va(versym_off)), (DT_VERDEF, va(verdef_off))]);
                }
                dyns.resize(7, (DT_NULL, 0));
                for (tag, val) in dyns {
                    put(&mut b, Dyn { tag, val });
                }
                // nbucket, nchain, one bucket, n chains (unused by the lookup).
                put(&mut b, 1u32);
                put(&mut b, n as u32);
                b.resize(sym_off, 0);
                put(&mut b, Sym::default());
                for (k, &(_, info, shndx, _)) in self.syms.iter().enumerate() {
                    put(
                        &mut b,
                        Sym {
                            name: names[k],
                            info,
                            shndx,
                            value: va(code_off + 16 * (k + 1)),
                            ..Sym::default()
                        },
                    );
                }
                put(&mut b, 0u16);
                for s in &self.syms {
                    put(&mut b, s.3);
                }
                b.resize(verdef_off, 0);
                for (i, name) in vernames.into_iter().enumerate() {
                    let last = i == 2;
                    put(
                        &mut b,
                        Verdef {
                            version: 1,
                            flags: if i == 0 { VER_FLG_BASE } else { 0 },
                            ndx: i as u16 + 1,
                            cnt: 1,
                            aux: 20,
                            next: if last { 0 } else { 28 },
                            ..Verdef::default()
                        },
                    );
                    put(&mut b, Verdaux { name, next: 0 });
                }
                assert_eq!(b.len(), str_off);
                b.extend_from_slice(&strtab);
                pad_to(&mut b, 16);
                b.resize(total, 0xcc);
                (b, move |k| code_off + 16 * (k + 1))
            }
        }

        /// `find` over the first `len` bytes of `image`.
        fn find_in(image: &[u8], len: usize) -> Option<usize> {
            // SAFETY: `image` outlives the `Image`, which covers at most its bytes.
            let image = unsafe { Image::new(image.as_ptr() as usize, len.min(image.len())) };
            find(&image, &WANTED)
        }

        #[test]
        fn finds_the_versioned_global_function_past_decoys_at_a_high_load_address() {
            let name = WANTED.name;
            let mut longer = name.to_vec();
            longer.extend_from_slice(b"64");
            let longer: &'static [u8] = longer.leak();
            let elf = Elf::new(vec![
                (name, STB_LOCAL << 4 | STT_FUNC, 1, WANTED_VER),
                (name, GLOBAL_FUNC, 0, WANTED_VER), // undefined
                (name, STB_GLOBAL << 4 | STT_OBJECT, 1, WANTED_VER),
                (longer, GLOBAL_FUNC, 1, WANTED_VER),
                (&name[..name.len() - 1], GLOBAL_FUNC, 1, WANTED_VER),
                (name, GLOBAL_FUNC, 1, OTHER_VER),
                (name, GLOBAL_FUNC, 1, WANTED_VER), // the one
            ]);
            let (image, code) = elf.build();
            assert_eq!(find_in(&image, image.len()), Some(code(6)));
            // SAFETY: as in `find_in`.
            let page = unsafe { Image::new(image.as_ptr() as usize, image.len()) };
            assert_eq!(loaded_len(&page), Some(image.len()));
        }

        #[test]
        fn a_missing_table_a_foreign_image_or_a_short_read_finds_nothing() {
            let only = || vec![(WANTED.name, GLOBAL_FUNC, 1, WANTED_VER)];
            let (image, code) = Elf::new(only()).build();
            assert_eq!(find_in(&image, image.len()), Some(code(0)));
            // Cut off inside the symbol table, or before the code.
            assert_eq!(find_in(&image, 64 + 2 * 56 + 7 * 16 + 40), None);
            assert_eq!(find_in(&image, code(0)), None);
            let variants: [fn(&mut Elf); 5] = [
                |e| e.hash = false,
                |e| e.versions = false,
                |e| e.byte_order = 3 - e.byte_order,
                |e| e.machine = 0,
                |e| e.syms[0].3 = OTHER_VER,
            ];
            for (i, change) in variants.into_iter().enumerate() {
                let mut elf = Elf::new(only());
                change(&mut elf);
                let (image, _) = elf.build();
                assert_eq!(find_in(&image, image.len()), None, "variant {i}");
            }
        }
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
