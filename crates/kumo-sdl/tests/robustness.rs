//! Hostile and damaged input: the parser answers every edit of a valid file with a value or a
//! located error, never a panic, and never accepts a file it then renders differently twice.

use proptest::prelude::*;

const SEEDS: &[&str] = &[
    include_str!("../../../examples/hello-web.yaml"),
    include_str!("../../../examples/wordpress-mysql.yaml"),
    include_str!("../../../examples/gpu-pytorch-job.yaml"),
];

/// One edit of a text: delete, insert or replace a character at some position.
#[derive(Debug, Clone)]
enum Edit {
    Delete(usize),
    Insert(usize, char),
    Replace(usize, char),
}

fn edit() -> impl Strategy<Value = Edit> {
    let ch = prop::sample::select(vec![
        ' ', '\n', ':', '-', '[', ']', '{', '}', '"', '\'', '&', '*', '!', '#', '0', '9', 'a', '.',
        '|', '>', '\t', 'é',
    ]);
    prop_oneof![
        any::<usize>().prop_map(Edit::Delete),
        (any::<usize>(), ch.clone()).prop_map(|(i, c)| Edit::Insert(i, c)),
        (any::<usize>(), ch).prop_map(|(i, c)| Edit::Replace(i, c)),
    ]
}

fn apply(text: &str, edits: &[Edit]) -> String {
    let mut chars: Vec<char> = text.chars().collect();
    for e in edits {
        let len = chars.len().max(1);
        match *e {
            Edit::Delete(i) if !chars.is_empty() => {
                chars.remove(i % len);
            }
            Edit::Insert(i, c) => chars.insert(i % (chars.len() + 1), c),
            Edit::Replace(i, c) if !chars.is_empty() => chars[i % len] = c,
            _ => {}
        }
    }
    chars.into_iter().collect()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn edited_files_never_panic(seed in 0..SEEDS.len(), edits in prop::collection::vec(edit(), 1..6)) {
        let text = apply(SEEDS[seed], &edits);
        match kumo_sdl::parse(&text) {
            Ok(sdl) => {
                let again = kumo_sdl::parse(&text).unwrap();
                prop_assert_eq!(sdl.manifest_hash(), again.manifest_hash());
                prop_assert!(!sdl.groups().is_empty());
            }
            Err(e) => prop_assert!(!e.message.is_empty()),
        }
    }

    #[test]
    fn arbitrary_text_never_panics(text in ".{0,400}") {
        let _ = kumo_sdl::parse(&text);
    }
}

#[test]
fn oversized_and_deep_inputs_are_refused_quickly() {
    let huge = "a: b\n".repeat(kumo_sdl::MAX_INPUT_BYTES / 4);
    let err = kumo_sdl::parse(&huge).unwrap_err();
    assert!(err.message.contains("at most"), "{err}");
    let deep = format!(
        "version: \"2.0\"\nservices: {}{}",
        "[".repeat(10_000),
        "]".repeat(10_000)
    );
    let err = kumo_sdl::parse(&deep).unwrap_err();
    assert!(err.message.contains("nested deeper"), "{err}");
}
