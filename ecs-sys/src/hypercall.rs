//! Guest -> host calls ("hypercalls"): one port write, `out dx, eax`, to [`PORT`].
//!
//! The 32-bit data word carries the operation in its low 8 bits and a small argument (a vCPU
//! index, a report key, an exit code) in the upper 24 bits:
//!
//! ```text
//!  31                              8 7          0
//! +---------------------------------+------------+
//! |            argument             |     op     |
//! +---------------------------------+------------+
//! ```
//!
//! A 64-bit value travels in the caller's slot (`hc_arg`), written before the `out`. The host
//! answers every call by writing a [`Status`] into the caller's slot (`hc_status`) before it
//! resumes the vCPU, so the guest reads it right after the `out` returns. An unknown or
//! malformed call gets an error status; it never takes the host down.

/// The I/O port of the hypercall. Guest code runs at CPL 3 with IOPL 3, so the write exits to
/// the VMM (`KVM_EXIT_IO`) instead of faulting.
pub const PORT: u16 = 0x0ec5;

/// The argument of [`Op::Register`]: the ABI version the guest speaks.
pub const ABI_VERSION_ARG: u32 = crate::abi::ABI_VERSION;

/// Bits of the data word that hold the operation.
pub const OP_BITS: u32 = 8;

/// The largest argument that fits beside the operation.
pub const ARG_MAX: u32 = (1 << (32 - OP_BITS)) - 1;

/// A hypercall operation.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Op {
    /// Announce that this vCPU uses the hint area. Argument: the guest's [`ABI_VERSION`](crate::abi::ABI_VERSION).
    Register = 1,
    /// Give up the pCPU slot (and any extension granted). Argument: 0.
    Yield = 2,
    /// Give the pCPU slot to vCPU `arg` (directed yield), typically a preempted lock holder.
    YieldTo = 3,
    /// Halt until kicked. Returns at once if a kick arrived since the last wait.
    Wait = 4,
    /// Wake vCPU `arg` from [`Op::Wait`] (or make its next wait return at once).
    Kick = 5,
    /// Report a result: key in `arg`, 64-bit value in the slot's `hc_arg`.
    Report = 6,
    /// The guest is done. Argument: exit code (0 = success).
    Exit = 7,
    /// Pause-loop exit: the waiter has spun for the header's `ple_window` (hardware PLE).
    PauseExit = 8,
}

impl Op {
    /// Every operation, in numeric order.
    pub const ALL: [Op; 8] = [
        Op::Register,
        Op::Yield,
        Op::YieldTo,
        Op::Wait,
        Op::Kick,
        Op::Report,
        Op::Exit,
        Op::PauseExit,
    ];
}

impl TryFrom<u32> for Op {
    type Error = Status;

    fn try_from(v: u32) -> Result<Self, Status> {
        Ok(match v {
            1 => Op::Register,
            2 => Op::Yield,
            3 => Op::YieldTo,
            4 => Op::Wait,
            5 => Op::Kick,
            6 => Op::Report,
            7 => Op::Exit,
            8 => Op::PauseExit,
            _ => return Err(Status::UnknownOp),
        })
    }
}

/// The host's answer to a hypercall, written to the caller's `hc_status`.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Status {
    /// Done.
    Ok = 0,
    /// The operation number is not one of [`Op`].
    UnknownOp = 1,
    /// The argument is out of range (for example a vCPU index past the last vCPU).
    BadArgument = 2,
    /// The guest speaks another ABI version.
    VersionMismatch = 3,
    /// The call was made on a port or with a width other than a 32-bit write to [`PORT`].
    BadAccess = 4,
}

impl TryFrom<u32> for Status {
    type Error = u32;

    fn try_from(v: u32) -> Result<Self, u32> {
        Ok(match v {
            0 => Status::Ok,
            1 => Status::UnknownOp,
            2 => Status::BadArgument,
            3 => Status::VersionMismatch,
            4 => Status::BadAccess,
            other => return Err(other),
        })
    }
}

/// Packs an operation and its argument into the data word. Arguments above [`ARG_MAX`] are
/// truncated to their low 24 bits (the host then sees another value and may reject it).
pub const fn encode(op: Op, arg: u32) -> u32 {
    (op as u32) | ((arg & ARG_MAX) << OP_BITS)
}

/// Splits a data word into its operation and argument.
pub fn decode(word: u32) -> Result<(Op, u32), Status> {
    let op = Op::try_from(word & ((1 << OP_BITS) - 1))?;
    Ok((op, word >> OP_BITS))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_every_op() {
        for op in Op::ALL {
            for arg in [0, 1, 7, 255, 4096, ARG_MAX] {
                assert_eq!(decode(encode(op, arg)), Ok((op, arg)));
            }
        }
    }

    #[test]
    fn garbage_is_rejected_not_panicked_on() {
        assert_eq!(decode(0), Err(Status::UnknownOp));
        assert_eq!(decode(0xff), Err(Status::UnknownOp));
        assert_eq!(decode(9 | (3 << 8)), Err(Status::UnknownOp));
        // Every word decodes to something or an error; none panics.
        let mut x: u32 = 0x1234_5678;
        for _ in 0..100_000 {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            if let Ok((op, arg)) = decode(x) {
                assert_eq!(encode(op, arg), x);
            }
        }
    }

    #[test]
    fn status_round_trip() {
        for s in [
            Status::Ok,
            Status::UnknownOp,
            Status::BadArgument,
            Status::VersionMismatch,
            Status::BadAccess,
        ] {
            assert_eq!(Status::try_from(s as u32), Ok(s));
        }
        assert_eq!(Status::try_from(77), Err(77));
    }
}
