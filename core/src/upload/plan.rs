//! Part planning: how a file of a given size is cut into parts.

pub const MIN_PART_SIZE: u64 = 100 * 1024;
pub const MAX_PART_SIZE: u64 = 5 * 1024 * 1024 * 1024;
pub const DEFAULT_PART_SIZE: u64 = 5 * 1024 * 1024;
pub const MAX_PART_COUNT: u64 = 10_000;

/// The cut of a file into parts `1..=part_count`, each `part_size` bytes but
/// the last. An empty file is one empty part.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Plan {
    pub file_size: u64,
    pub part_size: u64,
    pub part_count: u32,
}

impl Plan {
    /// Offset and length of part `n` (1-based).
    pub fn part(&self, n: u32) -> (u64, u64) {
        let offset = u64::from(n - 1) * self.part_size;
        let len = if n == self.part_count { self.file_size - offset } else { self.part_size };
        (offset, len)
    }
}

/// Plans a file of `file_size` bytes. A requested size outside 100 KB..5 GB
/// (or none) means 5 MB; the size grows when the file would need more than
/// 10,000 parts, so that it never does.
pub fn plan_parts(file_size: u64, requested: Option<i64>) -> Plan {
    if file_size == 0 {
        return Plan { file_size, part_size: 0, part_count: 1 };
    }
    let mut part_size = match requested {
        Some(r) if r >= MIN_PART_SIZE as i64 && r <= MAX_PART_SIZE as i64 => r as u64,
        _ => DEFAULT_PART_SIZE,
    };
    if file_size.div_ceil(part_size) > MAX_PART_COUNT {
        part_size = file_size.div_ceil(MAX_PART_COUNT);
    }
    Plan { file_size, part_size, part_count: file_size.div_ceil(part_size) as u32 }
}

/// The plan a checkpoint record describes, if it is a coherent cut of a
/// file of `file_size` bytes.
pub fn plan_from_record(file_size: u64, part_size: u64, part_count: u32) -> Option<Plan> {
    if file_size == 0 {
        return (part_count == 1).then_some(Plan { file_size, part_size, part_count });
    }
    let count = u64::from(part_count);
    let coherent = part_size > 0
        && part_size <= MAX_PART_SIZE
        && (1..=MAX_PART_COUNT).contains(&count)
        && file_size.div_ceil(part_size) == count;
    coherent.then_some(Plan { file_size, part_size, part_count })
}

#[cfg(test)]
mod tests {
    use super::*;
    const MB: u64 = 1024 * 1024;

    #[test]
    fn empty_file_is_one_empty_part() {
        let p = plan_parts(0, Some(10 * MB as i64));
        assert_eq!((p.part_size, p.part_count), (0, 1));
        assert_eq!(p.part(1), (0, 0));
    }

    #[test]
    fn requested_size_out_of_range_means_default() {
        for bad in [None, Some(0), Some(-1), Some(100 * 1024 - 1), Some(MAX_PART_SIZE as i64 + 1), Some(i64::MAX)] {
            assert_eq!(plan_parts(12 * MB, bad).part_size, DEFAULT_PART_SIZE, "{bad:?}");
        }
        assert_eq!(plan_parts(12 * MB, Some(100 * 1024)).part_size, 100 * 1024);
    }

    #[test]
    fn boundaries_and_last_part() {
        let p = plan_parts(10 * MB, Some(5 * MB as i64));
        assert_eq!(p.part_count, 2);
        assert_eq!(p.part(2), (5 * MB, 5 * MB));
        let p = plan_parts(10 * MB + 1, Some(5 * MB as i64));
        assert_eq!(p.part_count, 3);
        assert_eq!(p.part(3), (10 * MB, 1));
        let p = plan_parts(10 * MB - 1, Some(5 * MB as i64));
        assert_eq!(p.part_count, 2);
        assert_eq!(p.part(2), (5 * MB, 5 * MB - 1));
    }

    // The reference SDK plans 10,001 parts here (it rounds the count down
    // before checking the limit); the server refuses part 10,001.
    #[test]
    fn never_more_than_ten_thousand_parts() {
        let ps = 100 * 1024;
        let p = plan_parts(10_000 * ps + 1, Some(ps as i64));
        assert!(u64::from(p.part_count) <= MAX_PART_COUNT);
        assert!(p.part_size > ps);
        let (off, len) = p.part(p.part_count);
        assert_eq!(off + len, 10_000 * ps + 1);
        for size in [10_000 * ps, 10_000 * ps - 1, 16 * 1024 * MB, 48_828_125 * 1024 + 7] {
            let p = plan_parts(size, Some(ps as i64));
            assert!(u64::from(p.part_count) <= MAX_PART_COUNT, "{size}");
            let (off, len) = p.part(p.part_count);
            assert_eq!(off + len, size);
            assert!(len > 0 && len <= p.part_size);
        }
    }

    #[test]
    fn records_must_describe_a_coherent_cut() {
        assert!(plan_from_record(10 * MB + 1, 5 * MB, 3).is_some());
        assert!(plan_from_record(10 * MB + 1, 5 * MB, 2).is_none());
        assert!(plan_from_record(10 * MB, 0, 2).is_none());
        assert!(plan_from_record(0, 0, 1).is_some());
        assert!(plan_from_record(100, 1, 100).is_some(), "tiny parts are allowed in records");
        assert!(plan_from_record(10_001, 1, 10_001).is_none());
    }
}
