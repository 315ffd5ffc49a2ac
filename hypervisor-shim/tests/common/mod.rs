//! Helpers shared by the KVM integration tests.
#![allow(dead_code)]

/// Whether `/dev/kvm` can be opened; prints the reason a test skips when not.
pub fn kvm_available(test: &str) -> bool {
    match std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/kvm")
    {
        Ok(_) => true,
        Err(e) => {
            eprintln!("skipping {test}: /dev/kvm is not available ({e})");
            false
        }
    }
}

/// A minimal static ELF64 executable loading `code` at 0x400000 (after the headers) with its
/// entry at the first byte of `code`.
pub fn tiny_elf(code: &[u8]) -> Vec<u8> {
    const BASE: u64 = 0x40_0000;
    let hdrs = 64 + 56;
    let total = (hdrs + code.len()) as u64;
    let mut e = Vec::new();
    e.extend_from_slice(&[0x7f, b'E', b'L', b'F', 2, 1, 1, 0]);
    e.extend_from_slice(&[0; 8]);
    e.extend_from_slice(&2u16.to_le_bytes()); // ET_EXEC
    e.extend_from_slice(&62u16.to_le_bytes()); // EM_X86_64
    e.extend_from_slice(&1u32.to_le_bytes());
    e.extend_from_slice(&(BASE + hdrs as u64).to_le_bytes()); // entry
    e.extend_from_slice(&64u64.to_le_bytes()); // phoff
    e.extend_from_slice(&0u64.to_le_bytes()); // shoff
    e.extend_from_slice(&0u32.to_le_bytes()); // flags
    e.extend_from_slice(&64u16.to_le_bytes()); // ehsize
    e.extend_from_slice(&56u16.to_le_bytes()); // phentsize
    e.extend_from_slice(&1u16.to_le_bytes()); // phnum
    e.extend_from_slice(&64u16.to_le_bytes()); // shentsize
    e.extend_from_slice(&0u16.to_le_bytes()); // shnum
    e.extend_from_slice(&0u16.to_le_bytes()); // shstrndx
    assert_eq!(e.len(), 64);
    e.extend_from_slice(&1u32.to_le_bytes()); // PT_LOAD
    e.extend_from_slice(&5u32.to_le_bytes()); // R+X
    e.extend_from_slice(&0u64.to_le_bytes()); // offset
    e.extend_from_slice(&BASE.to_le_bytes()); // vaddr
    e.extend_from_slice(&BASE.to_le_bytes()); // paddr
    e.extend_from_slice(&total.to_le_bytes()); // filesz
    e.extend_from_slice(&total.to_le_bytes()); // memsz
    e.extend_from_slice(&0x1000u64.to_le_bytes()); // align
    assert_eq!(e.len(), hdrs);
    e.extend_from_slice(code);
    e
}

/// Hand-assembled guest (see tests/tiny_guest.rs for the source): registers, counts loop
/// iterations until the config block's `stop`, reports OPS = iterations, WRITES = 0,
/// COUNTER = 0, exits 0.
pub const SPIN_UNTIL_STOP: &[u8] = &[
    0x66, 0xba, 0xc5, 0x0e, 0xb8, 0x01, 0x01, 0x00, 0x00, 0xef, 0x65, 0x48, 0x8b, 0x1c, 0x25, 0x28,
    0x00, 0x00, 0x00, 0x31, 0xc9, 0x48, 0xff, 0xc1, 0x8b, 0x43, 0x28, 0x85, 0xc0, 0x74, 0xf6, 0x64,
    0x48, 0x89, 0x0c, 0x25, 0x20, 0x00, 0x00, 0x00, 0xb8, 0x06, 0x01, 0x00, 0x00, 0xef, 0x64, 0x48,
    0xc7, 0x04, 0x25, 0x20, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0xb8, 0x06, 0x02, 0x00, 0x00,
    0xef, 0xb8, 0x06, 0x03, 0x00, 0x00, 0xef, 0xb8, 0x07, 0x00, 0x00, 0x00, 0xef, 0xeb, 0xfe,
];
