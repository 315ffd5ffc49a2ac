//! The KVM virtual machine: guest memory, page tables, the guest ELF, the hint area, the
//! workload block, and N vCPUs set up in 64-bit long mode at CPL 3.
//!
//! Guest physical layout (identity-mapped with 2 MiB user pages; see `LAYOUT` below):
//!
//! ```text
//! 0x0000_1000  PML4        0x0000_2000  PDPT        0x0000_3000  PD (2 MiB entries)
//! 0x0040_0000  guest ELF (PT_LOAD segments must lie in [0x40_0000, 0x80_0000))
//! 0x0080_0000  WorkloadConfig block (64 bytes)
//! 0x0080_1000  hint area: HintHeader + one HintSlot per vCPU
//! 0x00a0_0000  stacks: 64 KiB per vCPU, vCPU i's top at 0xa0_0000 + (i + 1) * 64 KiB
//! ```
//!
//! Everything above the last stack is unmapped: a guest access there page-faults, and with no
//! IDT the fault becomes a triple fault (`KVM_EXIT_SHUTDOWN`).
//!
//! Register values follow `shared/kvm-probe/cpl3_probe.c`, measured to run guest code natively
//! on this machine's nested KVM (CPL 0 guest code is emulated there, ~1000x slower).

use crate::page::{GuestMemory, PAGE_2M, PageError};
use crate::workload::{CONFIG_MAGIC, LockKind, Misbehave, WorkloadConfig};
use core::sync::atomic::Ordering;
use ecs_sys::abi::{HEADER_SIZE, SLOT_SIZE, area_size};
use goblin::elf::{Elf, program_header::PT_LOAD};
use kvm_bindings::{KVM_MAX_CPUID_ENTRIES, kvm_segment, kvm_userspace_memory_region};
use kvm_ioctls::{Kvm, VcpuFd, VmFd};

/// Errors of VM creation, one per step.
#[derive(Debug, thiserror::Error)]
pub enum VmError {
    /// `/dev/kvm` cannot be opened.
    #[error("/dev/kvm is not available ({0})")]
    OpenKvm(#[source] kvm_ioctls::Error),
    /// `KVM_CREATE_VM` failed.
    #[error("KVM_CREATE_VM failed: {0}")]
    CreateVm(#[source] kvm_ioctls::Error),
    /// The kernel lacks `KVM_CAP_IMMEDIATE_EXIT`, which preemption relies on.
    #[error("KVM lacks KVM_CAP_IMMEDIATE_EXIT")]
    NoImmediateExit,
    /// Guest memory could not be mapped or written.
    #[error("guest memory: {0}")]
    Memory(#[from] PageError),
    /// `KVM_SET_USER_MEMORY_REGION` failed.
    #[error("KVM_SET_USER_MEMORY_REGION failed: {0}")]
    SetMemoryRegion(#[source] kvm_ioctls::Error),
    /// The guest image is not a parseable ELF.
    #[error("guest ELF: {0}")]
    ParseElf(#[source] goblin::error::Error),
    /// The guest image is not a 64-bit executable.
    #[error("guest ELF is not a 64-bit x86_64 executable")]
    ElfKind,
    /// A loadable segment lies outside the ELF window or its file range is bogus.
    #[error("guest ELF segment {vaddr:#x}+{memsz:#x} is outside [{lo:#x}, {hi:#x}) or truncated")]
    ElfSegment {
        /// Segment address.
        vaddr: u64,
        /// Segment size in memory.
        memsz: u64,
        /// Window start.
        lo: u64,
        /// Window end.
        hi: u64,
    },
    /// The entry point is outside the loaded segments' window.
    #[error("guest ELF entry {0:#x} is outside the ELF window")]
    ElfEntry(u64),
    /// Too many vCPUs for the layout.
    #[error("{0} vCPUs do not fit the hint area layout")]
    TooManyVcpus(u32),
    /// `KVM_GET_SUPPORTED_CPUID` failed.
    #[error("KVM_GET_SUPPORTED_CPUID failed: {0}")]
    SupportedCpuid(#[source] kvm_ioctls::Error),
    /// `KVM_CREATE_VCPU` failed.
    #[error("KVM_CREATE_VCPU {id} failed: {source}")]
    CreateVcpu {
        /// vCPU index.
        id: u32,
        /// The error.
        source: kvm_ioctls::Error,
    },
    /// `KVM_SET_CPUID2` failed.
    #[error("KVM_SET_CPUID2 on vCPU {id} failed: {source}")]
    SetCpuid {
        /// vCPU index.
        id: u32,
        /// The error.
        source: kvm_ioctls::Error,
    },
    /// `KVM_GET_SREGS` failed.
    #[error("KVM_GET_SREGS on vCPU {id} failed: {source}")]
    GetSregs {
        /// vCPU index.
        id: u32,
        /// The error.
        source: kvm_ioctls::Error,
    },
    /// `KVM_SET_SREGS` failed.
    #[error("KVM_SET_SREGS on vCPU {id} failed: {source}")]
    SetSregs {
        /// vCPU index.
        id: u32,
        /// The error.
        source: kvm_ioctls::Error,
    },
    /// `KVM_SET_REGS` failed.
    #[error("KVM_SET_REGS on vCPU {id} failed: {source}")]
    SetRegs {
        /// vCPU index.
        id: u32,
        /// The error.
        source: kvm_ioctls::Error,
    },
}

/// Fixed guest physical addresses (module docs).
pub mod layout {
    /// Page-map level 4.
    pub const PML4: u64 = 0x1000;
    /// Page-directory pointer table.
    pub const PDPT: u64 = 0x2000;
    /// Page directory (512 entries of 2 MiB: up to 1 GiB).
    pub const PD: u64 = 0x3000;
    /// Lowest address of the guest ELF.
    pub const ELF_LO: u64 = 0x40_0000;
    /// End of the ELF window.
    pub const ELF_HI: u64 = 0x80_0000;
    /// The workload configuration block.
    pub const CONFIG: u64 = 0x80_0000;
    /// The hint area.
    pub const HINT_AREA: u64 = 0x80_1000;
    /// End of the hint area's window.
    pub const HINT_AREA_END: u64 = 0xa0_0000;
    /// Base of the stacks.
    pub const STACKS: u64 = 0xa0_0000;
    /// Stack size per vCPU.
    pub const STACK_SIZE: u64 = 64 << 10;

    /// The top of vCPU `i`'s stack.
    pub const fn stack_top(i: u32) -> u64 {
        STACKS + (i as u64 + 1) * STACK_SIZE
    }
}

/// What to put in the VM.
#[derive(Clone, Debug)]
pub struct VmSpec {
    /// vCPUs.
    pub nr_vcpus: u32,
    /// pCPUs (published in the header).
    pub nr_pcpus: u32,
    /// Header `FEATURE_*` bits.
    pub features: u32,
    /// Header pause-loop window.
    pub ple_window: u32,
    /// Workload lock kind.
    pub lock: LockKind,
    /// Workload critical-section iterations.
    pub cs_iters: u32,
    /// Workload think iterations.
    pub think_iters: u32,
    /// Workload read share.
    pub read_percent: u32,
    /// Workload misbehaviour.
    pub misbehave: Misbehave,
    /// Workload per-vCPU operation cap (0 = none).
    pub max_ops: u64,
}

/// A created VM whose vCPUs are ready to run the guest's `_start`.
#[derive(Debug)]
pub struct Vm {
    // Field order is drop order: the vCPUs and the VM go before the memory they map.
    vcpus: Vec<VcpuFd>,
    _vm: VmFd,
    _kvm: Kvm,
    mem: GuestMemory,
    nr_vcpus: u32,
    entry: u64,
}

impl Vm {
    /// Creates the VM, loads `elf`, fills the hint area and the workload block, and creates
    /// and sets up the vCPUs.
    pub fn new(elf: &[u8], spec: &VmSpec) -> Result<Vm, VmError> {
        let n = spec.nr_vcpus;
        if n == 0
            || n > ecs_sys::abi::MAX_VCPUS
            || layout::HINT_AREA + area_size(n) as u64 > layout::HINT_AREA_END
        {
            return Err(VmError::TooManyVcpus(n));
        }
        let kvm = Kvm::new().map_err(VmError::OpenKvm)?;
        if !kvm.check_extension(kvm_ioctls::Cap::ImmediateExit) {
            return Err(VmError::NoImmediateExit);
        }
        let vm = kvm.create_vm().map_err(VmError::CreateVm)?;
        let size = (layout::stack_top(n - 1) as usize).next_multiple_of(PAGE_2M);
        let mut mem = GuestMemory::new(size)?;
        let region = kvm_userspace_memory_region {
            slot: 0,
            flags: 0,
            guest_phys_addr: 0,
            memory_size: size as u64,
            userspace_addr: mem.host_addr(),
        };
        // SAFETY: the region is exactly the mapping `mem`, which the returned `Vm` owns and
        // drops after the VM fd (field order), so the kernel never sees a dangling mapping.
        unsafe { vm.set_user_memory_region(region) }.map_err(VmError::SetMemoryRegion)?;

        // Identity map [0, size) with 2 MiB user pages: present | writable | user (| PS).
        mem.write_u64(layout::PML4, layout::PDPT | 7)?;
        mem.write_u64(layout::PDPT, layout::PD | 7)?;
        for i in 0..(size / PAGE_2M) as u64 {
            mem.write_u64(layout::PD + 8 * i, (i * PAGE_2M as u64) | 0x80 | 7)?;
        }

        let entry = load_elf(&mut mem, elf)?;
        init_guest_data(&mem, spec)?;

        let cpuid = kvm
            .get_supported_cpuid(KVM_MAX_CPUID_ENTRIES)
            .map_err(VmError::SupportedCpuid)?;
        let mut vcpus = Vec::with_capacity(n as usize);
        for id in 0..n {
            let fd = vm
                .create_vcpu(u64::from(id))
                .map_err(|source| VmError::CreateVcpu { id, source })?;
            fd.set_cpuid2(&cpuid)
                .map_err(|source| VmError::SetCpuid { id, source })?;
            setup_vcpu(&fd, id, entry)?;
            vcpus.push(fd);
        }
        Ok(Vm {
            vcpus,
            _vm: vm,
            _kvm: kvm,
            mem,
            nr_vcpus: n,
            entry,
        })
    }

    /// Guest memory.
    pub fn memory(&self) -> &GuestMemory {
        &self.mem
    }

    /// Number of vCPUs.
    pub fn nr_vcpus(&self) -> u32 {
        self.nr_vcpus
    }

    /// The guest's entry point.
    pub fn entry(&self) -> u64 {
        self.entry
    }

    /// Splits the VM into its memory (shared by all threads) and its vCPUs (one per thread).
    pub fn split(&mut self) -> (&GuestMemory, &mut [VcpuFd]) {
        (&self.mem, &mut self.vcpus)
    }
}

/// Copies the ELF's loadable segments into guest memory; returns the entry point.
fn load_elf(mem: &mut GuestMemory, image: &[u8]) -> Result<u64, VmError> {
    let elf = Elf::parse(image).map_err(VmError::ParseElf)?;
    if !elf.is_64 || elf.header.e_machine != goblin::elf::header::EM_X86_64 {
        return Err(VmError::ElfKind);
    }
    for ph in elf.program_headers.iter().filter(|p| p.p_type == PT_LOAD) {
        let bad = || VmError::ElfSegment {
            vaddr: ph.p_vaddr,
            memsz: ph.p_memsz,
            lo: layout::ELF_LO,
            hi: layout::ELF_HI,
        };
        let end = ph.p_vaddr.checked_add(ph.p_memsz).ok_or_else(bad)?;
        if ph.p_vaddr < layout::ELF_LO || end > layout::ELF_HI || ph.p_filesz > ph.p_memsz {
            return Err(bad());
        }
        let file = usize::try_from(ph.p_offset)
            .ok()
            .zip(usize::try_from(ph.p_filesz).ok())
            .and_then(|(o, l)| image.get(o..o.checked_add(l)?))
            .ok_or_else(bad)?;
        // The rest of the segment (.bss) is already zero: the memory is freshly mapped.
        mem.write_bytes(ph.p_vaddr, file)?;
    }
    let entry = elf.header.e_entry;
    if !(layout::ELF_LO..layout::ELF_HI).contains(&entry) {
        return Err(VmError::ElfEntry(entry));
    }
    Ok(entry)
}

/// Fills the hint area and the workload block.
fn init_guest_data(mem: &GuestMemory, spec: &VmSpec) -> Result<(), VmError> {
    let area = mem.hint_area(layout::HINT_AREA, spec.nr_vcpus)?;
    for (i, slot) in area.slots().iter().enumerate() {
        slot.reset(i as u32);
    }
    let header = area.header();
    header.init(
        layout::HINT_AREA,
        spec.nr_vcpus,
        spec.nr_pcpus,
        spec.features,
        spec.ple_window,
    );
    let cfg: &WorkloadConfig = mem.workload_config(layout::CONFIG)?;
    cfg.lock_kind.store(spec.lock as u32, Ordering::Relaxed);
    cfg.nr_vcpus.store(spec.nr_vcpus, Ordering::Relaxed);
    cfg.cs_iters.store(spec.cs_iters, Ordering::Relaxed);
    cfg.think_iters.store(spec.think_iters, Ordering::Relaxed);
    cfg.read_percent.store(spec.read_percent, Ordering::Relaxed);
    cfg.misbehave
        .store(spec.misbehave as u32, Ordering::Relaxed);
    cfg.max_ops.store(spec.max_ops, Ordering::Relaxed);
    cfg.stop.store(0, Ordering::Relaxed);
    cfg.reserved.store(0, Ordering::Relaxed);
    cfg.magic.store(CONFIG_MAGIC, Ordering::Release);
    header.config_addr.store(layout::CONFIG, Ordering::Release);
    Ok(())
}

/// The guest address of vCPU `id`'s hint slot.
pub const fn slot_addr(id: u32) -> u64 {
    layout::HINT_AREA + HEADER_SIZE as u64 + SLOT_SIZE as u64 * id as u64
}

/// Long mode, CPL 3 segments, IOPL 3, FS = own slot, GS = header, rdi = id, rsi = header.
fn setup_vcpu(fd: &VcpuFd, id: u32, entry: u64) -> Result<(), VmError> {
    let mut s = fd
        .get_sregs()
        .map_err(|source| VmError::GetSregs { id, source })?;
    s.cr3 = layout::PML4;
    s.cr4 = (1 << 5) | (1 << 9) | (1 << 10); // PAE, OSFXSR, OSXMMEXCPT
    s.cr0 = 1 | 2 | (1 << 4) | (1 << 5) | (1 << 31); // PE, MP, ET, NE, PG
    s.efer = 0x500; // LME | LMA
    let code = kvm_segment {
        base: 0,
        limit: 0xffff_ffff,
        selector: (3 << 3) | 3,
        type_: 11,
        present: 1,
        dpl: 3,
        db: 0,
        s: 1,
        l: 1,
        g: 1,
        avl: 0,
        unusable: 0,
        padding: 0,
    };
    let data = kvm_segment {
        type_: 3,
        selector: (4 << 3) | 3,
        l: 0,
        ..code
    };
    s.cs = code;
    s.ds = data;
    s.es = data;
    s.ss = data;
    s.fs = kvm_segment {
        base: slot_addr(id),
        ..data
    };
    s.gs = kvm_segment {
        base: layout::HINT_AREA,
        ..data
    };
    fd.set_sregs(&s)
        .map_err(|source| VmError::SetSregs { id, source })?;
    let regs = kvm_bindings::kvm_regs {
        rip: entry,
        rflags: 2 | (3 << 12), // reserved bit 1, IOPL 3: `out` exits instead of faulting
        // SysV entry convention: rsp + 8 is 16-byte aligned, as after a `call`.
        rsp: layout::stack_top(id) - 8,
        rdi: u64::from(id),
        rsi: layout::HINT_AREA,
        ..Default::default()
    };
    fd.set_regs(&regs)
        .map_err(|source| VmError::SetRegs { id, source })?;
    Ok(())
}

// The layout honours the guest image's contract (guest_image.rs).
const _: () = assert!(layout::STACK_SIZE >= crate::guest_image::STACK_MIN);
const _: () = assert!(layout::ELF_LO == crate::guest_image::IMAGE_BASE);
const _: () = assert!(layout::ELF_HI == crate::guest_image::IMAGE_END);
