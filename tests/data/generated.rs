//! The generated task corpus: correct answers, a disjoint held-out split, determinism.

use std::collections::HashSet;

use tritter::data::generated::is_held_out;
use tritter::data::{generate_tasks, Task, TaskExample};

use crate::common::fresh_rng;

/// Recomputes an answer from the prompt text alone.
fn solve(example: &TaskExample) -> String {
    let body = example.prompt.strip_suffix('=').expect("prompts end with '='");
    match example.task {
        Task::Add => {
            let (a, b) = body.split_once('+').unwrap();
            (a.parse::<u64>().unwrap() + b.parse::<u64>().unwrap()).to_string()
        }
        Task::Copy => body.strip_prefix("copy ").unwrap().to_string(),
        Task::Reverse => body.strip_prefix("rev ").unwrap().chars().rev().collect(),
        Task::Count => body.strip_prefix("len ").unwrap().chars().count().to_string(),
        Task::Sort => {
            let mut digits: Vec<char> = body.strip_prefix("sort ").unwrap().chars().collect();
            digits.sort();
            digits.into_iter().collect()
        }
    }
}

#[test]
fn answers_are_correct_and_splits_are_disjoint() {
    use rand::Rng;
    let seed = fresh_rng("answers_are_correct_and_splits_are_disjoint").random();
    let train = generate_tasks(seed, 3000, false);
    let held_out = generate_tasks(seed, 500, true);
    for example in train.iter().chain(&held_out) {
        assert_eq!(solve(example), example.answer, "{example:?}");
        assert_eq!(example.text(), format!("{}{}", example.prompt, example.answer));
    }
    assert!(train.iter().all(|e| !is_held_out(&e.prompt)));
    assert!(held_out.iter().all(|e| is_held_out(&e.prompt)));
    let train_prompts: HashSet<&str> = train.iter().map(|e| e.prompt.as_str()).collect();
    assert!(held_out.iter().all(|e| !train_prompts.contains(e.prompt.as_str())));
    let tasks: HashSet<Task> = train.iter().map(|e| e.task).collect();
    assert_eq!(tasks.len(), Task::ALL.len(), "every task appears");
    assert_eq!(generate_tasks(seed, 3000, false), train, "deterministic for a seed");
    assert_ne!(generate_tasks(seed ^ 1, 50, false), train[..50].to_vec());
}
