//! The simulated Brightspace site behind a generated history: which rows
//! (entities) exist on which day, when each was last changed, when it was
//! soft- or hard-deleted.
//!
//! Everything is a pure function of the seed, the entity number and the day,
//! so any extract can be written without replaying earlier ones and without
//! keeping rows in memory. Entities are numbered in insertion order: the
//! first full holds `0..initial`, and day `d` inserts the next
//! `inserts_per_day` numbers. Day 0 is the day of the first full; changes of
//! day `d` happen before that day's extracts are queued.

/// Per-day rates of change, as probabilities.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Rates {
    pub inserts: f64,
    pub updates: f64,
    pub hard_deletes: f64,
    pub soft_deletes: f64,
    pub duplicates: f64,
}

/// The simulated data set contents over time.
#[derive(Debug, Clone)]
pub(crate) struct World {
    seed: u64,
    initial: u64,
    inserts_per_day: u64,
    update_threshold: u64,
    duplicate_threshold: u64,
    /// Mean lifetime in days before a hard delete; `None`: never deleted.
    hard_lifetime: Option<u64>,
    /// Mean days before a soft delete; `None`: never soft-deleted.
    soft_lifetime: Option<u64>,
}

/// Salts keeping the independent decisions about one entity independent.
const SALT_HARD: u64 = 0x6861_7264;
const SALT_SOFT: u64 = 0x736f_6674;
const SALT_UPDATE: u64 = 0x7570_6474;
const SALT_DUPLICATE: u64 = 0x6475_706c;

/// Share of the first full's rows that are already soft-deleted.
const INITIAL_SOFT_DELETED_PERCENT: u64 = 3;

impl World {
    /// A world of `initial` rows changing at `rates`. Log data sets only
    /// grow: `append_only` turns updates and deletes off. `soft_deletes`
    /// says whether the data set has an `IsDeleted` column.
    pub fn new(seed: u64, initial: u64, rates: Rates, append_only: bool, soft: bool) -> World {
        let lifetime = |p: f64| (p > 0.0).then(|| (1.0 / p).round().max(1.0) as u64);
        let threshold = |p: f64| (p.clamp(0.0, 1.0) * u64::MAX as f64) as u64;
        World {
            seed,
            initial,
            inserts_per_day: match rates.inserts > 0.0 {
                true => ((initial as f64 * rates.inserts).round() as u64).max(1),
                false => 0,
            },
            update_threshold: if append_only {
                0
            } else {
                threshold(rates.updates)
            },
            duplicate_threshold: threshold(rates.duplicates),
            hard_lifetime: if append_only {
                None
            } else {
                lifetime(rates.hard_deletes)
            },
            soft_lifetime: match soft && !append_only {
                true => lifetime(rates.soft_deletes),
                false => None,
            },
        }
    }

    /// Entities numbered below this exist or existed by the end of `day`.
    pub fn capacity(&self, day: u32) -> u64 {
        self.initial + u64::from(day) * self.inserts_per_day
    }

    /// Number of the first entity inserted on `day` (day >= 1).
    pub fn first_of_day(&self, day: u32) -> u64 {
        self.initial + u64::from(day.saturating_sub(1)) * self.inserts_per_day
    }

    /// Rows in the first full.
    pub fn initial(&self) -> u64 {
        self.initial
    }

    /// Rows inserted per day.
    pub fn inserts_per_day(&self) -> u64 {
        self.inserts_per_day
    }

    /// The day the entity was inserted.
    pub fn born(&self, entity: u64) -> u32 {
        match entity.checked_sub(self.initial) {
            None => 0,
            Some(later) => 1 + (later / self.inserts_per_day.max(1)) as u32,
        }
    }

    /// The day the entity is hard-deleted (absent from then on), if ever.
    pub fn died(&self, entity: u64) -> Option<u32> {
        let lifetime = self.hard_lifetime?;
        let h = self.hash(entity, SALT_HARD, 0);
        Some(self.born(entity) + 1 + (h % (2 * lifetime)) as u32)
    }

    /// The day the entity is soft-deleted (`IsDeleted` = True), if ever.
    pub fn soft_deleted_on(&self, entity: u64) -> Option<u32> {
        let lifetime = self.soft_lifetime?;
        let h = self.hash(entity, SALT_SOFT, 0);
        let born = self.born(entity);
        if born == 0 && h % 100 < INITIAL_SOFT_DELETED_PERCENT {
            return Some(0);
        }
        Some(born + 1 + ((h >> 8) % (2 * lifetime)) as u32)
    }

    /// Whether the entity is in a full of `day`.
    pub fn alive(&self, entity: u64, day: u32) -> bool {
        self.born(entity) <= day && self.died(entity).is_none_or(|died| day < died)
    }

    /// Whether `day` changed the entity's values (not counting its insert).
    /// `born` and `soft` are the entity's, passed in because callers that
    /// scan many days already know them.
    fn updated(&self, entity: u64, day: u32, born: u32, soft: Option<u32>) -> bool {
        if day <= born {
            return false;
        }
        match soft {
            Some(soft) if soft == day => return true,
            Some(soft) if soft < day => return false,
            _ => {}
        }
        self.update_threshold != 0 && self.hash(entity, SALT_UPDATE, day) < self.update_threshold
    }

    /// Entities that may be in the differential of `day`: only that day's
    /// inserts when rows never change, else every entity so far.
    pub fn differential_candidates(&self, day: u32) -> std::ops::Range<u64> {
        if self.update_threshold == 0 && self.soft_lifetime.is_none() {
            self.first_of_day(day)..self.capacity(day)
        } else {
            0..self.capacity(day)
        }
    }

    /// Whether the entity belongs in the differential of `day`: inserted or
    /// changed that day and not hard-deleted.
    pub fn in_differential(&self, entity: u64, day: u32) -> bool {
        let born = self.born(entity);
        self.alive(entity, day)
            && (born == day || self.updated(entity, day, born, self.soft_deleted_on(entity)))
    }

    /// Whether the differential of `day` carries the entity twice (an older
    /// version first, the true one later in the file).
    pub fn duplicated(&self, entity: u64, day: u32) -> bool {
        self.hash(entity, SALT_DUPLICATE, day) < self.duplicate_threshold
    }

    /// The day of the entity's latest change up to `day`: its values are a
    /// function of the entity and this revision.
    pub fn revision(&self, entity: u64, day: u32) -> u32 {
        let born = self.born(entity);
        let soft = self.soft_deleted_on(entity);
        (born + 1..=day)
            .rev()
            .find(|&d| self.updated(entity, d, born, soft))
            .unwrap_or(born)
    }

    fn hash(&self, entity: u64, salt: u64, day: u32) -> u64 {
        mix(self.seed ^ mix(entity ^ mix(salt ^ (u64::from(day) << 40))))
    }
}

/// splitmix64's finaliser: a cheap, well-mixed bijection on u64.
pub(crate) fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rates() -> Rates {
        Rates {
            inserts: 0.02,
            updates: 0.05,
            hard_deletes: 0.01,
            soft_deletes: 0.01,
            duplicates: 0.1,
        }
    }

    #[test]
    fn entities_are_born_in_order() {
        let world = World::new(1, 100, rates(), false, true);
        assert_eq!(world.inserts_per_day(), 2);
        assert_eq!(world.born(99), 0);
        assert_eq!(world.born(100), 1);
        assert_eq!(world.born(101), 1);
        assert_eq!(world.born(102), 2);
        assert_eq!(world.first_of_day(2), 102);
        assert_eq!(world.capacity(2), 104);
    }

    #[test]
    fn revisions_follow_differentials() {
        let world = World::new(7, 1000, rates(), false, true);
        for entity in 0..world.capacity(20) {
            let mut last = None;
            for day in 0..20 {
                if !world.alive(entity, day) {
                    continue;
                }
                if world.in_differential(entity, day) {
                    last = Some(day);
                }
                if let Some(last) = last {
                    assert_eq!(
                        world.revision(entity, day),
                        last,
                        "entity {entity} day {day}"
                    );
                }
            }
        }
    }

    #[test]
    fn append_only_worlds_never_change_rows() {
        let world = World::new(3, 50, rates(), true, false);
        assert!((0..world.capacity(10)).all(|e| world.died(e).is_none()));
        assert!((0..50).all(|e| world.revision(e, 10) == 0));
    }
}
