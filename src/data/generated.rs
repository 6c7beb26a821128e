//! A built-in generated corpus of small tasks with checkable answers (addition, copying,
//! reversing, counting, sorting) that a small model learns in minutes on a CPU. Each document
//! is `prompt + answer`, e.g. `"012+345=0357"`; a held-out split (by hash of the prompt) never
//! appears in training, and [`crate::infer::task_accuracy`] scores exact-match answers.

use std::io::Write;
use std::path::Path;

use rand::{rngs::StdRng, Rng, SeedableRng};

use crate::error::Result;

/// The kinds of task.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Task {
    /// `"012+345="` → `"0357"`: operands of up to 3 digits written at width 3, the sum at
    /// width 4, so that digits of equal place value sit at fixed offsets.
    Add,
    /// `"copy abc="` → `"abc"`.
    Copy,
    /// `"rev abc="` → `"cba"`.
    Reverse,
    /// `"len abcde="` → `"5"`.
    Count,
    /// `"sort 3142="` → `"1234"`.
    Sort,
}

impl Task {
    pub const ALL: [Task; 5] = [Task::Add, Task::Copy, Task::Reverse, Task::Count, Task::Sort];

    pub fn name(self) -> &'static str {
        match self {
            Task::Add => "add",
            Task::Copy => "copy",
            Task::Reverse => "reverse",
            Task::Count => "count",
            Task::Sort => "sort",
        }
    }
}

/// One example: the model is prompted with `prompt` and must produce `answer`, then EOS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskExample {
    pub task: Task,
    pub prompt: String,
    pub answer: String,
}

impl TaskExample {
    /// The training document.
    pub fn text(&self) -> String {
        format!("{}{}", self.prompt, self.answer)
    }
}

/// Whether a prompt belongs to the held-out split (10% of prompts, by hash).
pub fn is_held_out(prompt: &str) -> bool {
    xxhash_rust::xxh3::xxh3_64(prompt.as_bytes()).is_multiple_of(10)
}

fn letters(rng: &mut StdRng, min: usize, max: usize) -> String {
    let n = rng.random_range(min..=max);
    (0..n).map(|_| rng.random_range(b'a'..=b'z') as char).collect()
}

fn random_example(rng: &mut StdRng) -> TaskExample {
    let task = Task::ALL[rng.random_range(0..Task::ALL.len())];
    let (prompt, answer) = match task {
        Task::Add => {
            let digits = |rng: &mut StdRng| 10u32.pow(rng.random_range(1..=3));
            let (limit_a, limit_b) = (digits(rng), digits(rng));
            let (a, b) = (rng.random_range(0..limit_a), rng.random_range(0..limit_b));
            (format!("{a:03}+{b:03}="), format!("{:04}", a + b))
        }
        Task::Copy => {
            let s = letters(rng, 1, 8);
            (format!("copy {s}="), s)
        }
        Task::Reverse => {
            let s = letters(rng, 1, 8);
            (format!("rev {s}="), s.chars().rev().collect())
        }
        Task::Count => {
            let s = letters(rng, 1, 9);
            (format!("len {s}="), s.len().to_string())
        }
        Task::Sort => {
            let n = rng.random_range(2..=6);
            let digits: Vec<u8> = (0..n).map(|_| rng.random_range(b'0'..=b'9')).collect();
            let mut sorted = digits.clone();
            sorted.sort_unstable();
            (format!("sort {}=", String::from_utf8(digits).unwrap()), String::from_utf8(sorted).unwrap())
        }
    };
    TaskExample { task, prompt, answer }
}

/// `count` examples of the given split, deterministic for `seed`.
pub fn generate_tasks(seed: u64, count: usize, held_out: bool) -> Vec<TaskExample> {
    task_stream(seed, held_out).take(count).collect()
}

/// The endless sequence whose first `count` items are [`generate_tasks`]`(seed, count, held_out)`,
/// for counts too large to hold in memory.
pub fn task_stream(seed: u64, held_out: bool) -> impl Iterator<Item = TaskExample> {
    let mut rng = StdRng::seed_from_u64(seed);
    std::iter::repeat_with(move || random_example(&mut rng)).filter(move |e| is_held_out(&e.prompt) == held_out)
}

/// `count` training examples as JSONL (`{"text": ...}` per line).
pub fn task_corpus(seed: u64, count: usize) -> Vec<u8> {
    let mut bytes = Vec::new();
    for example in generate_tasks(seed, count, false) {
        serde_json::to_writer(&mut bytes, &serde_json::json!({ "text": example.text() })).expect("json");
        bytes.write_all(b"\n").expect("vec write");
    }
    bytes
}

/// Writes [`task_corpus`] to `path`, atomically.
pub fn write_task_corpus(path: &Path, seed: u64, count: usize) -> Result<()> {
    crate::io::create_parent(path)?;
    crate::io::write_atomic(path, &task_corpus(seed, count))
}
