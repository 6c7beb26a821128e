//! The crate's eight parameter groups (embed, attention q/k/v/out, mlp up/down, lm_head): the
//! projections' groups come from [`LAYER_PROJECTIONS`], the one table of the layer's projections.

use crate::config::LAYER_PROJECTIONS;

/// The groups outside the decoder layers, by the first part of their parameter paths.
const OUTER: [(&str, &str); 2] = [("model.embed_tokens", "embed"), ("lm_head", "lm_head")];

/// The group of the parameter at `path`; `None` for norms (they follow the mean).
pub(super) fn group_of(path: &str) -> Option<&'static str> {
    if let Some((_, group)) = OUTER.iter().find(|(prefix, _)| path.starts_with(prefix)) {
        return Some(group);
    }
    let parts: Vec<&str> = path.split('.').collect();
    LAYER_PROJECTIONS.iter().find(|p| parts.contains(&p.name)).map(|p| p.hybrid_group)
}

/// The group the crate calls `key`, if it is one of ours.
pub(super) fn group_named(key: &str) -> Option<&'static str> {
    let outer = OUTER.iter().map(|(_, group)| *group);
    outer.chain(LAYER_PROJECTIONS.iter().map(|p| p.hybrid_group)).find(|group| *group == key)
}
