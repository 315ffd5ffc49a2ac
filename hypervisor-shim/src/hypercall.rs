//! Decoding a guest's port write into a scheduler request, or an error status.
//!
//! A hypercall is a 32-bit `out` to [`PORT`] (see `ecs_sys::hypercall`). Anything else the guest
//! writes with `out` is answered with [`Status::BadAccess`]; an unknown operation with
//! [`Status::UnknownOp`]; a vCPU index past the last vCPU, an unknown report key or a non-zero
//! argument where none is defined with [`Status::BadArgument`]; a `Register` speaking another
//! ABI version with [`Status::VersionMismatch`]. The caller writes the status into the calling
//! vCPU's `hc_status` before resuming it. Nothing here can panic on guest input.

use crate::workload::report;
use ecs_sys::hypercall::{ABI_VERSION_ARG, Op, PORT, Status, decode};

/// A valid hypercall, as a request to the scheduler.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Request {
    /// The guest registered the hint area with the right ABI version.
    Register,
    /// Give up the pCPU.
    Yield,
    /// Give the pCPU to this vCPU.
    YieldTo(u32),
    /// Halt until kicked.
    Wait,
    /// Wake this vCPU.
    Kick(u32),
    /// The guest spun for the pause-loop window.
    PauseExit,
    /// A result: key and the 64-bit value from `hc_arg`.
    Report {
        /// One of `workload::report`.
        key: u32,
        /// The value.
        value: u64,
    },
    /// The guest is done.
    Exit {
        /// Its exit code (`workload::exit_code`).
        code: u32,
    },
}

/// Whether `key` is one of the report keys of the contract (`workload::report`).
pub fn known_report_key(key: u32) -> bool {
    matches!(
        key,
        report::OPS
            | report::WRITES
            | report::COUNTER
            | report::VIOLATIONS
            | report::GRACE_PERIODS
            | report::GRACE_CYCLES
            | report::RUN_CYCLES
            | report::GARBAGE_REJECTED
    )
}

/// Decodes one port write. `hc_arg` is read from the caller's slot only for `Report`.
pub fn decode_io(
    port: u16,
    data: &[u8],
    nr_vcpus: u32,
    hc_arg: impl FnOnce() -> u64,
) -> Result<Request, Status> {
    let word: [u8; 4] = match data.try_into() {
        Ok(w) if port == PORT => w,
        _ => return Err(Status::BadAccess),
    };
    let (op, arg) = decode(u32::from_le_bytes(word))?;
    let vcpu = |n: u32| {
        if n < nr_vcpus {
            Ok(n)
        } else {
            Err(Status::BadArgument)
        }
    };
    let none = |r: Request| {
        if arg == 0 {
            Ok(r)
        } else {
            Err(Status::BadArgument)
        }
    };
    match op {
        Op::Register if arg == ABI_VERSION_ARG => Ok(Request::Register),
        Op::Register => Err(Status::VersionMismatch),
        Op::Yield => none(Request::Yield),
        Op::YieldTo => vcpu(arg).map(Request::YieldTo),
        Op::Wait => none(Request::Wait),
        Op::Kick => vcpu(arg).map(Request::Kick),
        Op::PauseExit => none(Request::PauseExit),
        Op::Report if known_report_key(arg) => Ok(Request::Report {
            key: arg,
            value: hc_arg(),
        }),
        Op::Report => Err(Status::BadArgument),
        Op::Exit => Ok(Request::Exit { code: arg }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ecs_sys::hypercall::encode;
    use proptest::prelude::*;

    fn call(op: Op, arg: u32) -> Result<Request, Status> {
        decode_io(PORT, &encode(op, arg).to_le_bytes(), 8, || 77)
    }

    #[test]
    fn valid_calls() {
        assert_eq!(call(Op::Register, ABI_VERSION_ARG), Ok(Request::Register));
        assert_eq!(call(Op::Yield, 0), Ok(Request::Yield));
        assert_eq!(call(Op::YieldTo, 7), Ok(Request::YieldTo(7)));
        assert_eq!(call(Op::Wait, 0), Ok(Request::Wait));
        assert_eq!(call(Op::Kick, 0), Ok(Request::Kick(0)));
        assert_eq!(call(Op::PauseExit, 0), Ok(Request::PauseExit));
        assert_eq!(
            call(Op::Report, report::OPS),
            Ok(Request::Report {
                key: report::OPS,
                value: 77
            })
        );
        assert_eq!(call(Op::Exit, 2), Ok(Request::Exit { code: 2 }));
    }

    #[test]
    fn invalid_calls() {
        assert_eq!(call(Op::Register, 99), Err(Status::VersionMismatch));
        assert_eq!(call(Op::YieldTo, 8), Err(Status::BadArgument));
        assert_eq!(call(Op::Kick, 1000), Err(Status::BadArgument));
        assert_eq!(call(Op::Yield, 1), Err(Status::BadArgument));
        assert_eq!(call(Op::Report, 999), Err(Status::BadArgument));
        assert_eq!(
            decode_io(PORT, &[0xff, 0, 0, 0], 8, || 0),
            Err(Status::UnknownOp)
        );
        assert_eq!(
            decode_io(PORT + 1, &encode(Op::Yield, 0).to_le_bytes(), 8, || 0),
            Err(Status::BadAccess)
        );
        assert_eq!(decode_io(PORT, &[2, 0], 8, || 0), Err(Status::BadAccess));
        assert_eq!(decode_io(PORT, &[], 8, || 0), Err(Status::BadAccess));
    }

    proptest! {
        #[test]
        fn garbage_never_panics(port: u16, data in proptest::collection::vec(any::<u8>(), 0..9),
                                nr in 1u32..300) {
            let r = decode_io(port, &data, nr, || 5);
            if port != PORT || data.len() != 4 {
                prop_assert_eq!(r, Err(Status::BadAccess));
            } else {
                let word = u32::from_le_bytes(data[..4].try_into().unwrap());
                let (op, arg) = (word & 0xff, word >> 8);
                match r {
                    Ok(Request::YieldTo(n)) | Ok(Request::Kick(n)) => prop_assert!(n < nr && n == arg),
                    Ok(Request::Report { key, value }) => {
                        prop_assert!(known_report_key(key));
                        prop_assert_eq!(value, 5);
                    }
                    Ok(_) => {}
                    Err(Status::UnknownOp) => prop_assert!(op == 0 || op > 8),
                    Err(Status::BadArgument) => prop_assert!(matches!(op, 2..=6 | 8)),
                    Err(Status::VersionMismatch) => prop_assert!(op == 1 && arg != ABI_VERSION_ARG),
                    Err(s) => prop_assert!(false, "unexpected status {:?}", s),
                }
            }
        }
    }
}
