//! Column values of generated rows, written straight into CSV text the way
//! D2L writes them: `True`/`False`, UTC timestamps with 3 or 7 fractional
//! digits and `Z`, plain decimals, GUIDs, text with commas, quotes, line
//! breaks and non-ASCII letters, empty fields for NULL.
//!
//! A row's key depends only on its entity number; the other values on the
//! entity and its revision (the day of its latest change), so the same row
//! is written identically by every extract that carries it.

use std::io::Write;

use bds_common::catalog::Dataset;
use fastrand::Rng;

use super::world::mix;

/// 100 ns ticks per second: the finest unit D2L writes (7 digits).
const TICKS_PER_SECOND: i64 = 10_000_000;
const TICKS_PER_DAY: i64 = 86_400 * TICKS_PER_SECOND;

/// Rows per key value of an outer key column, for composite keys.
const FANOUT_TWO_COLUMNS: u64 = 24;
/// First value of generated integer ids.
const ID_BASE: u64 = 100_000;
/// Ids in other columns point at the first this many rows of their parent.
const REFERENCED_IDS: u64 = 1_000;
const FANOUT_MORE_COLUMNS: u64 = 8;

/// Texts that trip up careless CSV handling.
const QUIRKY: &[&str] = &[
    "Smith, John",
    "O'Brien",
    "The \"best\" course",
    "Line one\r\nLine two",
    "first line\nsecond line",
    "Zoë Müller",
    "François Lefèvre",
    "Łódź, Ørsted",
    "日本語のコース",
    "Ελληνικά μαθήματα",
    "курс русского языка",
    "🎓 Graduation",
    "naïve, café \"résumé\"\r\nsecond line",
    " padded ",
    "\"\"",
    "tab\there",
];
const FIRST_NAMES: &[&str] = &[
    "Alice", "Bob", "Chloé", "Dmitri", "Emma", "Fatima", "José", "Hana", "Ines", "Jun", "Kofi",
    "Léa", "Mateo", "Noor", "Olivia", "Priya", "Zoë",
];
const LAST_NAMES: &[&str] = &[
    "Nguyen", "García", "Müller", "O'Neil", "Smith", "Kowalski", "Tanaka", "Dubois", "Okafor",
    "Jensen", "Rossi", "Ivanova",
];
const ROLE_NAMES: &[&str] = &[
    "Student",
    "Student",
    "Student",
    "Student",
    "Instructor",
    "Teaching Assistant",
    "Auditor",
];
const ORG_UNIT_TYPES: &[&str] = &[
    "Course Offering",
    "Course Offering",
    "Course Template",
    "Section",
    "Group",
    "Semester",
    "Department",
];
const SUBJECTS: &[&str] = &[
    "Biology",
    "Algebra",
    "History",
    "Chemistry",
    "Physics",
    "Literature",
    "Statistics",
    "Économie",
    "Philosophy",
    "Music",
];
const ITEMS: &[&str] = &[
    "Quiz",
    "Assignment",
    "Lab",
    "Essay",
    "Midterm",
    "Project",
    "Discussion",
    "Final Exam",
];
const WORDS: &[&str] = &[
    "Introduction",
    "Biology",
    "Algebra",
    "History",
    "Assignment",
    "Quiz",
    "Week",
    "Module",
    "Lab",
    "Discussion",
    "Final",
    "Review",
    "Chemistry",
    "Essay",
    "Project",
    "Survey",
];

/// What a column holds, decided once per data set.
#[derive(Debug, Clone)]
enum Role {
    /// Key column in a key without a time: one digit of the entity number.
    KeyDigit {
        position: u32,
        level: u32,
        fanout: u64,
        pg_type: String,
    },
    /// Timestamp key column of an event: unique per entity.
    KeyEvent,
    /// Other key column beside an event time: any stable value.
    KeyFree {
        pg_type: String,
    },
    IsDeleted,
    DeletedTime,
    DeletedBy,
    RowVersion,
    /// The column a minor version appends.
    Extra,
    Value(Kind),
}

#[derive(Debug, Clone, Copy)]
enum Kind {
    Id,
    Count,
    Boolean,
    Timestamp,
    Numeric,
    Float,
    Uuid,
    /// Points scored: 0 to 10, never above a denominator.
    Points,
    /// Points possible: mostly 10, sometimes 20.
    PointsPossible,
    FirstName,
    LastName,
    /// A login such as `jnguyen417`: never quirky.
    Login,
    /// A role such as `Student`: never quirky.
    RoleName,
    /// An org unit type such as `Course Offering`: never quirky.
    OrgUnitType,
    /// A course's name, such as `Biology 101`.
    CourseName,
    /// The name of a thing in a course, such as `Quiz 3`.
    Title,
    Email,
    Code,
    Prose,
    Word,
}

#[derive(Debug, Clone)]
struct Plan {
    role: Role,
    nullable: bool,
    /// Value depends on the entity only, not on its revision.
    stable: bool,
    /// Always written in quotes (D2L quotes some fields needlessly).
    always_quote: bool,
}

/// One row to write: which entity, as of which revision.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RowState {
    pub entity: u64,
    pub revision: u32,
    /// Day of the soft delete, when it happened on or before the extract.
    pub soft_deleted_on: Option<u32>,
    /// An outdated copy, written before the true row in a differential.
    pub stale: bool,
}

/// Where an entity's event time comes from (log data sets).
#[derive(Debug, Clone, Copy)]
pub(crate) struct EventClock {
    /// Tick of the first full's queued time (day 0).
    pub start: i64,
    pub initial: u64,
    pub inserts_per_day: u64,
}

/// How to write the rows of one data set.
#[derive(Debug, Clone)]
pub(crate) struct RowWriter {
    seed: u64,
    plans: Vec<Plan>,
    clock: EventClock,
}

impl RowWriter {
    /// Plans the columns of `dataset`, with `extra_header` appended.
    pub fn new(dataset: &Dataset, seed: u64, clock: EventClock) -> RowWriter {
        let has_event = dataset.key.iter().any(|k| {
            dataset
                .columns
                .iter()
                .any(|c| &c.column == k && c.pg_type == "timestamptz")
        });
        let mut plans: Vec<Plan> = dataset
            .columns
            .iter()
            .enumerate()
            .map(|(index, column)| {
                let key_level = dataset.key.iter().position(|k| k == &column.column);
                let role = match key_level {
                    Some(level) => key_role(level, dataset.key.len(), has_event, &column.pg_type),
                    None => value_role(&dataset.name, &column.header, &column.pg_type),
                };
                Plan {
                    role,
                    nullable: column.nullable && key_level.is_none(),
                    stable: mix(seed ^ index as u64).is_multiple_of(3),
                    always_quote: column.pg_type == "text" && mix(seed ^ index as u64) % 4 == 1,
                }
            })
            .collect();
        plans.push(Plan {
            role: Role::Extra,
            nullable: true,
            stable: false,
            always_quote: false,
        });
        RowWriter { seed, plans, clock }
    }

    /// Writes one row; `with_extra` adds the appended column.
    pub fn write(&self, line: &mut CsvLine, row: RowState, with_extra: bool) {
        let mut stable = Rng::with_seed(mix(self.seed ^ mix(row.entity)));
        let revision_seed = u64::from(row.revision) | (u64::from(row.stale) << 32);
        let mut varying = Rng::with_seed(mix(self.seed ^ mix(row.entity ^ mix(revision_seed))));
        let columns = self.plans.len() - usize::from(!with_extra);

        for plan in &self.plans[..columns] {
            let rng = if plan.stable {
                &mut stable
            } else {
                &mut varying
            };
            if plan.nullable && !is_deletion(&plan.role) && rng.u8(..100) < 12 {
                line.null();
                continue;
            }
            self.write_value(line.start(), plan, row, rng);
            line.finish(plan.always_quote);
        }
        line.end_row();
    }

    fn write_value(&self, out: &mut Vec<u8>, plan: &Plan, row: RowState, rng: &mut Rng) {
        match &plan.role {
            Role::KeyDigit {
                position,
                level,
                fanout,
                pg_type,
            } => {
                let outermost = *position == 0;
                let digit = key_digit(row.entity, *level, *fanout, outermost);
                write_key(out, pg_type, *position, digit);
            }
            Role::KeyEvent => {
                let ticks = event_ticks(self.clock, row.entity);
                let digits = if row.entity.is_multiple_of(3) { 7 } else { 3 };
                write_timestamp(out, ticks, digits);
            }
            Role::KeyFree { pg_type } => {
                let value = mix(self.seed ^ mix(row.entity ^ 0x006b_6579)) % 6;
                write_key(out, pg_type, 9, value);
            }
            Role::IsDeleted => out.extend_from_slice(match row.soft_deleted_on {
                Some(_) => b"True",
                None => b"False",
            }),
            Role::DeletedTime | Role::DeletedBy => self.write_deletion(out, plan, row, rng),
            Role::RowVersion => {
                let version = u64::from(row.revision) + 1 + if row.stale { 1000 } else { 0 };
                let _ = write!(out, "{version}");
            }
            Role::Extra => write_text(out, Kind::Prose, rng),
            Role::Value(kind) => write_kind(out, *kind, self.clock.start, rng),
        }
    }

    /// `DeletedDate`-like columns are set exactly when the row is
    /// soft-deleted (empty otherwise, even when the catalog says not null).
    fn write_deletion(&self, out: &mut Vec<u8>, plan: &Plan, row: RowState, rng: &mut Rng) {
        let Some(day) = row.soft_deleted_on else {
            return;
        };
        match plan.role {
            Role::DeletedTime => {
                let ticks = self.clock.start + i64::from(day) * TICKS_PER_DAY
                    - 3600 * TICKS_PER_SECOND
                    + rng.i64(0..1800 * TICKS_PER_SECOND);
                write_timestamp(out, ticks, 3);
            }
            _ => {
                let _ = write!(out, "{}", rng.u64(1..300_000));
            }
        }
    }
}

/// Whether the column says something about a soft delete, so its emptiness
/// is decided by the delete and not at random.
fn is_deletion(role: &Role) -> bool {
    matches!(role, Role::IsDeleted | Role::DeletedTime | Role::DeletedBy)
}

fn key_role(level: usize, key_len: usize, has_event: bool, pg_type: &str) -> Role {
    if has_event {
        return match pg_type {
            "timestamptz" => Role::KeyEvent,
            _ => Role::KeyFree {
                pg_type: pg_type.into(),
            },
        };
    }
    let fanout = if key_len == 2 {
        FANOUT_TWO_COLUMNS
    } else {
        FANOUT_MORE_COLUMNS
    };
    Role::KeyDigit {
        position: level as u32,
        level: (key_len - 1 - level) as u32,
        fanout,
        pg_type: pg_type.into(),
    }
}

fn value_role(dataset: &str, header: &str, pg_type: &str) -> Role {
    let lower = header.to_ascii_lowercase();
    match (lower.as_str(), pg_type) {
        ("isdeleted", "boolean") => return Role::IsDeleted,
        ("deleteddate" | "datedeleted", "timestamptz") => return Role::DeletedTime,
        ("deletedby" | "deletedbyuserid", "bigint") => return Role::DeletedBy,
        ("version", "bigint") => return Role::RowVersion,
        _ => {}
    }
    Role::Value(match pg_type {
        "bigint" if lower.ends_with("id") => Kind::Id,
        "bigint" => Kind::Count,
        "boolean" => Kind::Boolean,
        "timestamptz" => Kind::Timestamp,
        "numeric" if lower.ends_with("denominator") || lower.contains("maxpoints") => {
            Kind::PointsPossible
        }
        "numeric"
            if ["points", "score", "grade"]
                .iter()
                .any(|w| lower.contains(w)) =>
        {
            Kind::Points
        }
        "numeric" => Kind::Numeric,
        "double precision" => Kind::Float,
        "uuid" => Kind::Uuid,
        _ if lower.contains("email") => Kind::Email,
        _ if lower.ends_with("firstname") || lower.ends_with("middlename") => Kind::FirstName,
        _ if lower.ends_with("lastname") => Kind::LastName,
        _ if lower.ends_with("username") => Kind::Login,
        _ if lower.ends_with("rolename") => Kind::RoleName,
        _ if lower == "type" || lower.ends_with("orgunittype") => Kind::OrgUnitType,
        _ if lower == "name" && dataset == "Organizational Units" => Kind::CourseName,
        _ if lower.ends_with("name") || lower.ends_with("title") => Kind::Title,
        _ if lower.contains("code") || lower.ends_with("id") => Kind::Code,
        _ if [
            "description",
            "title",
            "comment",
            "text",
            "note",
            "body",
            "feedback",
        ]
        .iter()
        .any(|w| lower.contains(w)) =>
        {
            Kind::Prose
        }
        _ => Kind::Word,
    })
}

/// Digit `level` (0 = fastest) of the entity number in the key's mixed
/// radix; the outermost level takes all the rest, so keys are unique.
fn key_digit(entity: u64, level: u32, fanout: u64, outermost: bool) -> u64 {
    let shifted = entity / fanout.pow(level);
    if outermost { shifted } else { shifted % fanout }
}

fn write_key(out: &mut Vec<u8>, pg_type: &str, position: u32, digit: u64) {
    match pg_type {
        "uuid" => {
            let salt = u64::from(position) << 58 | 0x5eed;
            write_uuid(out, mix(digit ^ salt), mix(digit ^ !salt), false);
        }
        "text" => {
            let _ = write!(out, "K{position}-{digit}");
        }
        "boolean" => out.extend_from_slice(if digit.is_multiple_of(2) {
            b"False"
        } else {
            b"True"
        }),
        "timestamptz" => write_timestamp(out, 1_600_000_000 * TICKS_PER_SECOND, 3),
        // Every integer key column counts from the same base as the
        // single-column keys of the parent data sets (users, org units, grade
        // objects...), so joins between generated data sets find rows.
        _ => {
            let _ = write!(out, "{}", ID_BASE + digit);
        }
    }
}

/// The event time of an entity of a log data set: the first full's rows
/// spread over the 14 days before it, later ones over the day they were
/// inserted. Two events are at least a millisecond apart, so they stay
/// distinct after rounding to microseconds.
fn event_ticks(clock: EventClock, entity: u64) -> i64 {
    let (start, span, index, count) = if entity < clock.initial {
        (
            clock.start - 14 * TICKS_PER_DAY,
            14 * TICKS_PER_DAY,
            entity,
            clock.initial,
        )
    } else {
        let later = entity - clock.initial;
        let per_day = clock.inserts_per_day.max(1);
        let day = (later / per_day) as i64;
        let day_start = clock.start + day * TICKS_PER_DAY + 3600 * TICKS_PER_SECOND;
        (
            day_start,
            22 * 3600 * TICKS_PER_SECOND,
            later % per_day,
            per_day,
        )
    };
    let step = (span / count.max(1) as i64).max(10_000);
    let ticks = start + index as i64 * step + (mix(entity) % 7919) as i64;
    if entity.is_multiple_of(3) {
        ticks
    } else {
        ticks - ticks.rem_euclid(10_000)
    }
}

fn write_kind(out: &mut Vec<u8>, kind: Kind, start: i64, rng: &mut Rng) {
    match kind {
        // Mostly ids of the first rows of the parent data set, so they join.
        Kind::Id => {
            let _ = write!(out, "{}", ID_BASE + rng.u64(0..REFERENCED_IDS));
        }
        Kind::Count => {
            let _ = write!(out, "{}", rng.i64(-5..1000));
        }
        Kind::Boolean => out.extend_from_slice(if rng.bool() { b"True" } else { b"False" }),
        Kind::Timestamp => {
            // Within the year before the first full: never in the future.
            let ticks = start - rng.i64(0..365 * TICKS_PER_DAY);
            match rng.u8(..3) {
                0 => write_timestamp(out, ticks, 7),
                _ => write_timestamp(out, ticks - ticks.rem_euclid(10_000), 3),
            }
        }
        Kind::Numeric => {
            let cents = rng.i64(-2_000..100_000);
            let sign = if cents < 0 { "-" } else { "" };
            let _ = write!(out, "{sign}{}.{:02}", cents.abs() / 100, cents.abs() % 100);
        }
        // Most students pass: scores skew high.
        Kind::Points => {
            let hundredths = 1_000 - rng.i64(0..=1_000) * rng.i64(0..=1_000) / 1_000;
            let _ = write!(out, "{}.{:02}", hundredths / 100, hundredths % 100);
        }
        Kind::PointsPossible => {
            let _ = write!(out, "{}", [10, 10, 10, 20][rng.usize(..4)]);
        }
        Kind::Float => {
            let quarters = rng.i64(-400..40_000);
            let _ = write!(out, "{}", quarters as f64 / 4.0);
        }
        Kind::Uuid => write_uuid(out, rng.u64(..), rng.u64(..), rng.u8(..10) == 0),
        _ => write_text(out, kind, rng),
    }
}

fn write_text(out: &mut Vec<u8>, kind: Kind, rng: &mut Rng) {
    let pick = |rng: &mut Rng, list: &[&'static str]| list[rng.usize(..list.len())];
    // Logins and values D2L takes from a fixed list are never quirky.
    match kind {
        Kind::Login => return write_login(out, rng),
        Kind::RoleName => return out.extend_from_slice(pick(rng, ROLE_NAMES).as_bytes()),
        Kind::OrgUnitType => return out.extend_from_slice(pick(rng, ORG_UNIT_TYPES).as_bytes()),
        _ => {}
    }
    if rng.u8(..100) < 8 {
        out.extend_from_slice(QUIRKY[rng.usize(..QUIRKY.len())].as_bytes());
        return;
    }
    let _ = match kind {
        Kind::FirstName => write!(out, "{}", pick(rng, FIRST_NAMES)),
        Kind::LastName => write!(out, "{}", pick(rng, LAST_NAMES)),
        Kind::CourseName => write!(out, "{} {}", pick(rng, SUBJECTS), rng.u32(100..500)),
        Kind::Title => write!(out, "{} {}", pick(rng, ITEMS), rng.u32(1..13)),
        Kind::Email => write!(
            out,
            "{}.{}{}@example.edu",
            pick(rng, FIRST_NAMES),
            pick(rng, LAST_NAMES),
            rng.u32(..1000)
        ),
        Kind::Code => write!(out, "{}-{:04}", pick(rng, WORDS), rng.u32(..10_000)),
        Kind::Prose => write!(
            out,
            "{} {} for {} {}, part {}",
            pick(rng, WORDS),
            pick(rng, WORDS),
            pick(rng, FIRST_NAMES),
            pick(rng, LAST_NAMES),
            rng.u8(1..20)
        ),
        _ => write!(out, "{} {}", pick(rng, WORDS), rng.u32(..500)),
    };
}

/// `jnguyen417`: an initial, a surname and a number, lower-case ASCII.
fn write_login(out: &mut Vec<u8>, rng: &mut Rng) {
    let first = FIRST_NAMES[rng.usize(..FIRST_NAMES.len())];
    let last = LAST_NAMES[rng.usize(..LAST_NAMES.len())];
    let letters = first.chars().take(1).chain(last.chars());
    for c in letters.flat_map(char::to_lowercase) {
        if c.is_ascii_alphanumeric() {
            out.push(c as u8);
        } else if c.is_alphabetic() {
            // The base letter of an accented one is close enough here.
            out.push(b'x');
        }
    }
    let _ = write!(out, "{}", rng.u32(..1000));
}

fn write_uuid(out: &mut Vec<u8>, high: u64, low: u64, upper: bool) {
    let hex = format!("{high:016x}{low:016x}");
    let hex = if upper { hex.to_ascii_uppercase() } else { hex };
    let _ = write!(
        out,
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    );
}

/// `YYYY-MM-DDTHH:MM:SS.fffZ` (3 digits) or `.fffffffZ` (7 digits) from
/// 100 ns ticks since 1970; 3 digits truncate.
pub(crate) fn write_timestamp(out: &mut Vec<u8>, ticks: i64, digits: u32) {
    let seconds = ticks.div_euclid(TICKS_PER_SECOND);
    let fraction = ticks.rem_euclid(TICKS_PER_SECOND);
    let (year, month, day) = civil_from_days(seconds.div_euclid(86_400));
    let second_of_day = seconds.rem_euclid(86_400);
    let _ = write!(
        out,
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.",
        second_of_day / 3600,
        second_of_day / 60 % 60,
        second_of_day % 60
    );
    let _ = match digits {
        7 => write!(out, "{fraction:07}Z"),
        _ => write!(out, "{:03}Z", fraction / 10_000),
    };
}

/// Proleptic Gregorian date of a day count since 1970-01-01 (the
/// well-known era-based conversion).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z.rem_euclid(146_097);
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let mp = (5 * day_of_year + 2) / 153;
    let day = (day_of_year - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// One CSV line being built: fields are written into a scratch buffer, then
/// quoted as needed and appended.
#[derive(Debug, Default)]
pub(crate) struct CsvLine {
    pub buffer: Vec<u8>,
    field: Vec<u8>,
    fields_in_row: usize,
}

impl CsvLine {
    /// Starts a field; write its raw value into the returned buffer.
    pub fn start(&mut self) -> &mut Vec<u8> {
        self.field.clear();
        &mut self.field
    }

    /// Appends the started field, quoted if it needs it or `always_quote`.
    pub fn finish(&mut self, always_quote: bool) {
        self.separator();
        let needs_quotes = self
            .field
            .iter()
            .any(|&b| matches!(b, b',' | b'"' | b'\r' | b'\n'));
        if !(needs_quotes || always_quote && !self.field.is_empty()) {
            self.buffer.extend_from_slice(&self.field);
            return;
        }
        self.buffer.push(b'"');
        for &b in &self.field {
            if b == b'"' {
                self.buffer.push(b'"');
            }
            self.buffer.push(b);
        }
        self.buffer.push(b'"');
    }

    /// Appends an empty field (NULL).
    pub fn null(&mut self) {
        self.separator();
    }

    /// Ends the row with CRLF.
    pub fn end_row(&mut self) {
        self.buffer.extend_from_slice(b"\r\n");
        self.fields_in_row = 0;
    }

    fn separator(&mut self) {
        if self.fields_in_row > 0 {
            self.buffer.push(b',');
        }
        self.fields_in_row += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_use_the_d2l_form() {
        let mut out = Vec::new();
        let ticks = 1_700_000_000 * TICKS_PER_SECOND + 1_234_567;
        write_timestamp(&mut out, ticks, 7);
        out.push(b' ');
        write_timestamp(&mut out, ticks, 3);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "2023-11-14T22:13:20.1234567Z 2023-11-14T22:13:20.123Z"
        );
    }

    #[test]
    fn civil_dates_match_chrono() {
        for days in [-1000, 0, 59, 365 * 30 + 7, 20_000, 60_000] {
            let expected = chrono::DateTime::from_timestamp(days * 86_400, 0).unwrap();
            let (y, m, d) = civil_from_days(days);
            assert_eq!(
                format!("{y:04}-{m:02}-{d:02}"),
                expected.format("%Y-%m-%d").to_string()
            );
        }
    }

    #[test]
    fn fields_are_quoted_only_when_needed() {
        let mut line = CsvLine::default();
        line.start().extend_from_slice(b"plain");
        line.finish(false);
        line.null();
        line.start().extend_from_slice(b"a \"b\", c\r\nd");
        line.finish(false);
        line.start().extend_from_slice(b"quoted anyway");
        line.finish(true);
        line.end_row();
        assert_eq!(
            String::from_utf8(line.buffer).unwrap(),
            "plain,,\"a \"\"b\"\", c\r\nd\",\"quoted anyway\"\r\n"
        );
    }

    #[test]
    fn composite_key_digits_are_unique() {
        let mut seen = std::collections::HashSet::new();
        for entity in 0..10_000u64 {
            let digits: Vec<u64> = (0..3).map(|l| key_digit(entity, l, 8, l == 2)).collect();
            assert!(seen.insert(digits), "entity {entity}");
        }
    }
}
