//! Learning rate per optimizer step: linear warmup from 0, then cosine or linear decay to 0 at
//! the last step (transformers' `get_cosine_schedule_with_warmup` / `…linear…`), or constant.

use crate::params::Schedule;

/// The learning rate of optimizer step `step` (0-based) out of `total`.
pub fn lr_at(schedule: Schedule, base: f64, step: usize, total: usize, warmup: usize) -> f64 {
    if step < warmup {
        return base * (step + 1) as f64 / warmup as f64;
    }
    let span = total.saturating_sub(warmup).max(1) as f64;
    let progress = ((step - warmup) as f64 / span).clamp(0.0, 1.0);
    match schedule {
        Schedule::Constant => base,
        Schedule::Linear => base * (1.0 - progress),
        Schedule::Cosine => base * 0.5 * (1.0 + (std::f64::consts::PI * progress).cos()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn warmup_then_decay() {
        let lr = |s| lr_at(Schedule::Cosine, 1.0, s, 110, 10);
        assert!((lr(0) - 0.1).abs() < 1e-12);
        assert!((lr(9) - 1.0).abs() < 1e-12);
        assert!((lr(10) - 1.0).abs() < 1e-12);
        assert!((lr(60) - 0.5).abs() < 1e-12);
        assert!(lr(109) < 0.001);
        assert!((lr_at(Schedule::Linear, 2.0, 60, 110, 10) - 1.0).abs() < 1e-12);
        assert_eq!(lr_at(Schedule::Constant, 2.0, 100, 110, 0), 2.0);
    }
}
