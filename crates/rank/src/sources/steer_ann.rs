use std::collections::HashMap;
use std::sync::Arc;

use steerfeed_core::ports::{VectorSearch, VideoCatalog};
use steerfeed_core::{Candidate, FeedContext, Reason, Result, Source, VideoId};

use super::{Nearest, hydrate};

/// One ANN query per positive steering concept ("more baking" searches near "baking").
pub struct SteerAnnSource {
    catalog: Arc<dyn VideoCatalog>,
    search: Arc<dyn VectorSearch>,
    quota_per_concept: usize,
}

impl SteerAnnSource {
    /// A source proposing at most `quota_per_concept` videos per boosted concept.
    pub fn new(
        catalog: Arc<dyn VideoCatalog>,
        search: Arc<dyn VectorSearch>,
        quota_per_concept: usize,
    ) -> Self {
        Self {
            catalog,
            search,
            quota_per_concept,
        }
    }
}

impl Source for SteerAnnSource {
    fn fetch(&self, ctx: &FeedContext) -> Result<Vec<Candidate>> {
        if !ctx.parental.personalization {
            return Ok(Vec::new());
        }
        // Best similarity per video across concepts, and which concept gave it.
        let mut best: HashMap<VideoId, (f32, usize)> = HashMap::new();
        for (i, concept) in ctx
            .concepts
            .iter()
            .enumerate()
            .filter(|(_, c)| c.weight > 0.0)
        {
            let k = ((self.quota_per_concept as f32) * concept.weight.min(2.0)).ceil() as usize;
            let found = Nearest::of(self.search.as_ref(), ctx, concept.vector.as_slice(), k)?;
            for hit in found.into_hits() {
                let e = best.entry(hit.video).or_insert((f32::NEG_INFINITY, i));
                if hit.similarity > e.0 {
                    *e = (hit.similarity, i);
                }
            }
        }
        let mut ranked: Vec<(VideoId, f32, usize)> =
            best.into_iter().map(|(v, (s, i))| (v, s, i)).collect();
        ranked.sort_by(|a, b| b.1.total_cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        let labels: HashMap<VideoId, usize> =
            ranked.iter().map(|(v, _, i)| (v.clone(), *i)).collect();
        hydrate(
            self.catalog.as_ref(),
            ranked.into_iter().map(|(v, s, _)| (v, s)),
            "steer_ann",
            |v| Reason::Steering {
                concept: labels
                    .get(&v.id)
                    .and_then(|&i| ctx.concepts.get(i))
                    .map(|c| c.label.clone())
                    .unwrap_or_default(),
            },
        )
    }

    fn name(&self) -> &'static str {
        "steer_ann"
    }
}
