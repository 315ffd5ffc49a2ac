//! The guest program, embedded: the static ELF every vCPU runs.
//!
//! `build.rs` builds `hypervisor-shim/guest` (a `no_std` binary on `ecs-locks`' guest backend)
//! with a nested `cargo build --release --locked` and this module includes the result, so the
//! `ecs-shim` binary carries its guest and needs no file at run time.
//!
//! What the image is (checked by the tests below):
//! - a 64-bit little-endian x86_64 `ET_EXEC` ELF, static (no `PT_INTERP`, no `PT_DYNAMIC`);
//! - every `PT_LOAD` segment lies in [`IMAGE_BASE`]..[`IMAGE_END`], so the host may place the
//!   hint area, the config block and the stacks from [`IMAGE_END`] up;
//! - the entry point is `_start`, inside an executable segment.
//!
//! What the host must do with it: copy each `PT_LOAD` segment's `p_filesz` bytes to its
//! `p_paddr` (= `p_vaddr`: the guest runs identity-mapped) and zero the rest of its `p_memsz`
//! (`.bss` holds the locks and the shared counters), afresh for every run; then start each vCPU
//! at `e_entry` with the registers described in `hypervisor-shim/guest/src/main.rs`:
//! `rdi` = vCPU index, `rsi` = hint header address, `rsp` = that vCPU's stack top, `%fs` base =
//! its hint slot, `%gs` base = the hint header, CPL 3, IOPL 3.

/// The lowest address of the image (the guest's `-Wl,--image-base`).
pub const IMAGE_BASE: u64 = 0x40_0000;

/// Every loadable byte of the image lies below this address.
pub const IMAGE_END: u64 = 0x80_0000;

/// Stack bytes each vCPU needs below its initial `rsp` (the guest's `STACK_NEEDED`; measured use
/// is under 1 KiB, the rest is margin).
pub const STACK_MIN: u64 = 16 * 1024;

/// The guest program's ELF file, as built by `build.rs`.
pub fn guest_elf() -> &'static [u8] {
    include_bytes!(env!("ECS_GUEST_ELF"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use goblin::elf::Elf;
    use goblin::elf::header::{EM_X86_64, ET_EXEC};
    use goblin::elf::program_header::{PF_X, PT_DYNAMIC, PT_INTERP, PT_LOAD};

    fn elf() -> Elf<'static> {
        Elf::parse(guest_elf()).expect("the embedded guest is a valid ELF")
    }

    #[test]
    fn is_a_static_x86_64_executable() {
        let elf = elf();
        assert!(elf.is_64 && elf.little_endian);
        assert_eq!(
            elf.header.e_type, ET_EXEC,
            "linked -no-pie at a fixed address"
        );
        assert_eq!(elf.header.e_machine, EM_X86_64);
        assert!(elf.interpreter.is_none());
        assert!(
            elf.program_headers
                .iter()
                .all(|ph| ph.p_type != PT_INTERP && ph.p_type != PT_DYNAMIC),
            "no dynamic linking"
        );
    }

    #[test]
    fn loads_between_image_base_and_image_end() {
        let elf = elf();
        let loads: Vec<_> = elf
            .program_headers
            .iter()
            .filter(|ph| ph.p_type == PT_LOAD)
            .collect();
        assert!(!loads.is_empty());
        for ph in &loads {
            let end = ph.p_vaddr.checked_add(ph.p_memsz).expect("no overflow");
            assert!(
                ph.p_vaddr >= IMAGE_BASE && end <= IMAGE_END,
                "segment {:#x}..{end:#x} outside {IMAGE_BASE:#x}..{IMAGE_END:#x}",
                ph.p_vaddr
            );
            assert_eq!(ph.p_paddr, ph.p_vaddr, "identity-mapped");
            assert!(ph.p_filesz <= ph.p_memsz);
            let file_end = ph.p_offset.checked_add(ph.p_filesz).expect("no overflow");
            assert!(
                file_end <= guest_elf().len() as u64,
                "segment bytes in the file"
            );
        }
        assert_eq!(loads.iter().map(|ph| ph.p_vaddr).min(), Some(IMAGE_BASE));
    }

    #[test]
    fn entry_is_start_in_an_executable_segment() {
        let elf = elf();
        let entry = elf.entry;
        assert!(
            elf.program_headers.iter().any(|ph| ph.p_type == PT_LOAD
                && ph.p_flags & PF_X != 0
                && (ph.p_vaddr..ph.p_vaddr + ph.p_memsz).contains(&entry)),
            "entry {entry:#x} is not in an executable PT_LOAD segment"
        );
        let start = elf
            .syms
            .iter()
            .find(|s| elf.strtab.get_at(s.st_name) == Some("_start"))
            .expect("the image keeps its symbols");
        assert_eq!(start.st_value, entry);
    }
}
