//! Loom models of every ecs-locks protocol live in `tests/`, one file per lock family. They
//! compile to nothing without `--cfg loom`; `.ci/run` runs them with it.
