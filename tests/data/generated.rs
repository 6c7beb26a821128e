//! The generated task corpus: correct answers, a disjoint held-out split, determinism.

use std::collections::HashSet;

use tritter::data::generated::is_held_out;
use tritter::data::{generate_tasks, Task, TaskExample};

use crate::data::common::fresh_rng;

/// Recomputes an answer from the prompt text alone.
fn solve(example: &TaskExample) -> String {
    let body = example.prompt.strip_suffix('=').expect("prompts end with '='");
    match example.task {
        Task::Add => {
            let (a, b) = body.split_once('+').unwrap();
            assert!(a.len() == 3 && b.len() == 3, "operands at width 3: {body}");
            format!("{:04}", a.parse::<u64>().unwrap() + b.parse::<u64>().unwrap())
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

/// Answer-only targets keep exactly the tokens of each answer and the EOS after it whose
/// prompt is in the window, worked out here from the examples' prompt and answer lengths.
#[test]
fn answer_targets_keep_each_answer_and_its_eos_only() {
    use rand::Rng;
    use tritter::data::{AnswerTargets, Tokenizer};
    let mut rng = fresh_rng("answer_targets_keep_each_answer_and_its_eos_only");
    let tokenizer = Tokenizer::bytes();
    let special = tokenizer.special_ids();
    let separator = tokenizer.encode("=").unwrap()[0];
    let answers = AnswerTargets { separator, eos: special.eos, pad: special.pad };
    // The corpus's token stream and, for each token that is part of an answer (or its EOS),
    // the position of its prompt's last token.
    let (mut stream, mut prompt_end) = (Vec::new(), Vec::new());
    for example in generate_tasks(rng.random(), 300, false) {
        let (prompt, answer) = (tokenizer.encode(&example.prompt).unwrap(), tokenizer.encode(&example.answer).unwrap());
        let end = stream.len() + prompt.len() - 1;
        prompt_end.extend(std::iter::repeat_n(None, prompt.len()));
        prompt_end.extend(std::iter::repeat_n(Some(end), answer.len() + 1));
        stream.extend(prompt.into_iter().chain(answer).chain([special.eos]));
    }
    for _ in 0..300 {
        let start = rng.random_range(0..stream.len() - 65);
        let window = &stream[start..start + 65];
        let expected: Vec<u32> = (1..65)
            .map(|i| match prompt_end[start + i] {
                Some(end) if end >= start => window[i],
                _ => special.pad,
            })
            .collect();
        assert_eq!(answers.targets(window), expected, "window at {start}");
    }
}

/// The end-to-end promise of the generated corpus: JSONL on disk → token cache → windows →
/// batches → a `test`-preset model whose held-out loss falls far below the uniform guess.
#[test]
fn a_small_model_learns_the_generated_tasks() {
    use std::sync::Arc;

    use burn::data::dataloader::DataLoaderBuilder;
    use burn::optim::{AdamWConfig, GradientsParams, Optimizer};
    use tritter::data::{
        prepare_corpus, write_task_corpus, PrepareOptions, TokenBatch, TokenBatcher, TokenWindows, Tokenizer,
    };
    use tritter::{TritterConfig, TritterModel};

    type AD = burn::backend::Autodiff<burn::backend::NdArray<f32>>;
    type B = burn::backend::NdArray<f32>;
    use rand::Rng;
    let seed: u64 = fresh_rng("a_small_model_learns_the_generated_tasks").random();
    let dir = crate::data::common::temp_dir();
    let path = dir.path().join("tasks.jsonl");
    write_task_corpus(&path, seed, 20_000).unwrap();
    let tokenizer = Tokenizer::bytes();
    let options = PrepareOptions { val_fraction: 0.05, cache_dir: dir.path().join("cache"), ..Default::default() };
    let corpus = prepare_corpus(&path, &tokenizer, &options, &mut |_| {}).unwrap();
    let pad = tokenizer.special_ids().pad;
    let val = TokenBatcher::default().batch_of::<B>(
        &TokenWindows::new(Arc::new(corpus.validation), 64, pad),
        32,
        &Default::default(),
    );
    let loader = DataLoaderBuilder::<AD, _, _>::new(TokenBatcher::default())
        .batch_size(16)
        .shuffle(seed)
        .build(TokenWindows::new(Arc::new(corpus.train), 64, pad));

    let mut config = TritterConfig::test();
    config.pad_token_id = Some(pad as usize);
    let mut model = TritterModel::<AD>::new(&config, &Default::default()).unwrap();
    let before: f32 = burn::module::AutodiffModule::valid(&model).loss(val.input_ids.clone()).into_scalar();
    let mut optim = AdamWConfig::new().with_beta_2(0.95).init();
    for (step, TokenBatch { input_ids, .. }) in loader.iter().take(250).enumerate() {
        let loss = model.loss(input_ids);
        let grads = GradientsParams::from_grads(loss.backward(), &model);
        let lr = 1e-2 * ((step + 1) as f64 / 20.0).min(1.0);
        model = optim.step(lr, model, grads);
    }
    let trained = burn::module::AutodiffModule::valid(&model);
    let after: f32 = trained.loss(val.input_ids).into_scalar();
    eprintln!("held-out loss {before:.3} -> {after:.3}");
    assert!(before > 5.5, "an untrained model should be near ln(512) = 6.24, got {before}");
    assert!(after < 0.45 * before, "held-out loss only fell from {before} to {after}");

    // The accuracy evaluation runs on held-out prompts and accounts for every example.
    let held_out = generate_tasks(seed, 40, true);
    let accuracy = tritter::infer::task_accuracy(&trained, &tokenizer, &held_out).unwrap();
    assert_eq!(accuracy.total, 40);
    assert_eq!(accuracy.per_task.values().map(|(_, t)| t).sum::<usize>(), 40);
    assert!(accuracy.per_task.values().all(|(c, t)| c <= t));
    eprintln!("held-out accuracy after 250 steps: {:.1}%", 100.0 * accuracy.accuracy());
}

/// A generated corpus left in the cache by another version (another task format) is replaced
/// by this version's examples before it is tokenized, and an up-to-date one is left untouched.
#[test]
fn a_stale_generated_corpus_in_the_cache_is_replaced() {
    use burn::data::dataset::Dataset;
    use tritter::data::training_sets::{training_sets, GENERATED_TASKS_FILE};
    use tritter::data::{task_corpus, PrepareOptions, Tokenizer};
    let dir = crate::data::common::temp_dir();
    let options = PrepareOptions { cache_dir: dir.path().to_path_buf(), ..Default::default() };
    let path = dir.path().join(GENERATED_TASKS_FILE);
    std::fs::write(&path, "{\"text\": \"12+345=357\"}\n").unwrap();
    let sets = training_sets(&[], &Tokenizer::bytes(), &options, 64, 1, &mut |_, _| {}).unwrap();
    assert_eq!(std::fs::read(&path).unwrap(), task_corpus(1, 50_000), "the old corpus was kept");
    assert!(sets.train.len() > 1000, "{} windows", sets.train.len());
    let modified = std::fs::metadata(&path).unwrap().modified().unwrap();
    training_sets(&[], &Tokenizer::bytes(), &options, 64, 1, &mut |_, _| {}).unwrap();
    assert_eq!(std::fs::metadata(&path).unwrap().modified().unwrap(), modified, "rewritten needlessly");
}
