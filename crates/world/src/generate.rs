//! The generator.

use std::collections::BTreeSet;

use jiff::Timestamp;
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use steerfeed_core::{
    AgeBand, Audience, ConsentScope, Embedding, Event, EventKey, EventKind, SafetyLabel, TopicId,
    User, UserId, Video, VideoId,
};

use crate::DEFAULT_TOPICS;
use crate::captions::{FRAMES, subjects};

/// What world to make. The same config always makes the same world.
#[derive(Debug, Clone, PartialEq)]
pub struct WorldConfig {
    /// Seed of every random choice.
    pub seed: u64,
    /// Users (viewers; some are also creators).
    pub users: usize,
    /// Videos.
    pub videos: usize,
    /// Embedding dimension.
    pub dim: usize,
    /// Share of users who post videos.
    pub creator_share: f32,
    /// Share of teen accounts.
    pub teen_share: f32,
    /// Mean follows per user.
    pub follows_per_user: usize,
    /// Probability that a follow goes to a creator sharing the follower's main interest.
    pub homophily: f32,
    /// Probability that a followed user follows back.
    pub follow_back: f32,
    /// Share of videos that remix an earlier one.
    pub remix_share: f32,
    /// Share of videos that feature people in cameos.
    pub cameo_share: f32,
    /// Share of cameo-featured people who revoke consent for one video or creator.
    pub revocation_share: f32,
    /// Mean engagements per user (each comes with an impression, plus two impressions of
    /// videos scrolled past). Default 40.
    pub events_per_user: usize,
    /// Days of history before `now`.
    pub days: i64,
    /// The world's clock.
    pub now: Timestamp,
    /// Topics (default: the taxonomy of docs/design.md §4).
    pub topics: Vec<TopicId>,
}

impl WorldConfig {
    /// A small world: `users`, `videos`, 384-dimensional embeddings, default shares.
    pub fn new(seed: u64, users: usize, videos: usize) -> Self {
        Self {
            seed,
            users,
            videos,
            dim: 384,
            creator_share: 0.2,
            teen_share: 0.15,
            follows_per_user: 20,
            homophily: 0.7,
            follow_back: 0.3,
            remix_share: 0.1,
            cameo_share: 0.15,
            revocation_share: 0.1,
            events_per_user: 40,
            days: 14,
            now: Timestamp::from_second(1_795_000_000).unwrap_or(Timestamp::UNIX_EPOCH),
            topics: DEFAULT_TOPICS
                .iter()
                .filter_map(|t| TopicId::new(t).ok())
                .collect(),
        }
    }
}

/// A generated user.
#[derive(Debug, Clone, PartialEq)]
pub struct SimUser {
    /// The user.
    pub user: User,
    /// Interest weights over topic indices (summing to 1), strongest first.
    pub interests: Vec<(usize, f32)>,
    /// Whether the user posts videos.
    pub creator: bool,
    /// Who may use this person's likeness.
    pub consent: ConsentScope,
}

/// A consent grant: who may put this person in a cameo.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsentGrant {
    /// The person.
    pub person: UserId,
    /// The scope (teens at most mutuals).
    pub scope: ConsentScope,
}

/// A consent revocation, for one video or every video of one creator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Revocation {
    /// The person no longer consents to this video.
    Video {
        /// Who revokes.
        person: UserId,
        /// The video.
        video: VideoId,
    },
    /// The person no longer consents to any video by this creator.
    Creator {
        /// Who revokes.
        person: UserId,
        /// The creator.
        creator: UserId,
    },
}

/// A generated world.
#[derive(Debug, Clone, PartialEq)]
pub struct World {
    /// The config it came from.
    pub config: WorldConfig,
    /// Users, in id order (`u0`, `u1`, ...).
    pub users: Vec<SimUser>,
    /// Videos, oldest first.
    pub videos: Vec<Video>,
    /// Index into `config.topics` of each video's main topic.
    pub video_topic: Vec<usize>,
    /// Follow edges (follower, followee), sorted, no duplicates, no self-follows.
    pub follows: Vec<(UserId, UserId)>,
    /// Consent grants of every user whose scope is not `Nobody`.
    pub consents: Vec<ConsentGrant>,
    /// Revocations, applied after the videos were posted.
    pub revocations: Vec<Revocation>,
    /// Events, in time order, unique keys.
    pub events: Vec<Event>,
}

const TIME_ZONES: [&str; 8] = [
    "UTC",
    "Europe/Paris",
    "America/New_York",
    "America/Los_Angeles",
    "Asia/Tokyo",
    "Asia/Kolkata",
    "Australia/Sydney",
    "America/Sao_Paulo",
];

fn normal(rng: &mut StdRng) -> f32 {
    let u1: f64 = rng.random_range(f64::EPSILON..1.0);
    let u2: f64 = rng.random_range(0.0..1.0);
    ((-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()) as f32
}

/// Picks an index with probability proportional to its weight.
pub(crate) fn pick_weighted(rng: &mut StdRng, weights: &[(usize, f32)]) -> usize {
    let total: f32 = weights.iter().map(|w| w.1).sum();
    let mut x = rng.random_range(0.0..total.max(f32::MIN_POSITIVE));
    for &(i, w) in weights {
        if x < w {
            return i;
        }
        x -= w;
    }
    weights.last().map_or(0, |w| w.0)
}

fn uid(i: usize) -> UserId {
    UserId::new(format!("u{i}")).unwrap_or_else(|_| unreachable!("u<n> is a valid id"))
}

fn vid(i: usize) -> VideoId {
    VideoId::new(format!("v{i}")).unwrap_or_else(|_| unreachable!("v<n> is a valid id"))
}

/// The safety label a topic of the generated world carries, if any.
pub fn label_of(topic: &str) -> Option<SafetyLabel> {
    steerfeed_core::policy::default_label(topic)
}

impl World {
    /// Index into `config.topics` of each topic.
    pub fn topic_index(&self) -> std::collections::HashMap<TopicId, usize> {
        self.config
            .topics
            .iter()
            .enumerate()
            .map(|(i, t)| (t.clone(), i))
            .collect()
    }

    /// Generates the world `config` describes.
    pub fn generate(mut config: WorldConfig) -> World {
        if config.topics.is_empty() {
            config.topics = WorldConfig::new(0, 0, 0).topics;
        }
        if config.users == 0 {
            // Nobody to post or watch.
            config.videos = 0;
        }
        let mut rng = StdRng::seed_from_u64(config.seed);
        let nt = config.topics.len().max(1);
        let dim = config.dim.max(2);

        // Topic centres.
        let centres: Vec<Vec<f32>> = (0..nt)
            .map(|_| (0..dim).map(|_| normal(&mut rng)).collect())
            .collect();

        // Users: 1 to 3 interests, strongest first; sensitive topics rarely.
        let mut users = Vec::with_capacity(config.users);
        for i in 0..config.users {
            let k = rng.random_range(1..=3usize);
            let mut interests: Vec<(usize, f32)> = Vec::new();
            while interests.len() < k {
                let t = rng.random_range(0..nt);
                if label_of(config.topics[t].as_str()).is_some() && rng.random_range(0.0..1.0) < 0.8
                {
                    continue;
                }
                if !interests.iter().any(|x| x.0 == t) {
                    interests.push((t, rng.random_range(0.2..1.0f32)));
                }
            }
            interests.sort_by(|a, b| b.1.total_cmp(&a.1));
            let total: f32 = interests.iter().map(|x| x.1).sum();
            interests.iter_mut().for_each(|x| x.1 /= total);
            let teen = rng.random_range(0.0..1.0) < config.teen_share;
            let consent = match rng.random_range(0..4) {
                0 => ConsentScope::Nobody,
                1 => ConsentScope::Approved,
                2 => ConsentScope::Mutuals,
                _ => ConsentScope::Everyone,
            };
            let age_band = if teen { AgeBand::Teen } else { AgeBand::Adult };
            users.push(SimUser {
                user: User {
                    id: uid(i),
                    age_band,
                    time_zone: TIME_ZONES[rng.random_range(0..TIME_ZONES.len())].to_owned(),
                },
                interests,
                creator: rng.random_range(0.0..1.0) < config.creator_share || i == 0,
                consent: consent.clamp_for(age_band),
            });
        }
        let creators: Vec<usize> = (0..users.len()).filter(|&i| users[i].creator).collect();
        let by_topic: Vec<Vec<usize>> = (0..nt)
            .map(|t| {
                creators
                    .iter()
                    .copied()
                    .filter(|&c| users[c].interests[0].0 == t)
                    .collect()
            })
            .collect();

        // Follows with homophily, some followed back.
        let mut follows = BTreeSet::new();
        if users.len() > 1 && !creators.is_empty() {
            for i in 0..users.len() {
                let n = rng.random_range(0..=2 * config.follows_per_user);
                for _ in 0..n {
                    let same = &by_topic[users[i].interests[0].0];
                    let target =
                        if !same.is_empty() && rng.random_range(0.0..1.0) < config.homophily {
                            same[rng.random_range(0..same.len())]
                        } else if rng.random_range(0.0..1.0) < 0.8 {
                            creators[rng.random_range(0..creators.len())]
                        } else {
                            rng.random_range(0..users.len())
                        };
                    if target != i {
                        follows.insert((i, target));
                        if rng.random_range(0.0..1.0) < config.follow_back {
                            follows.insert((target, i));
                        }
                    }
                }
            }
        }

        // Videos, oldest first, spread over the history window.
        let span_s = config.days.max(1) * 86_400;
        let start = config.now.as_second() - span_s;
        let mut times: Vec<i64> = (0..config.videos)
            .map(|_| start + rng.random_range(0..span_s))
            .collect();
        times.sort_unstable();
        let consenting: Vec<usize> = (0..users.len())
            .filter(|&i| users[i].consent != ConsentScope::Nobody)
            .collect();
        let mut videos = Vec::with_capacity(config.videos);
        let mut video_topic = Vec::with_capacity(config.videos);
        for (n, &at) in times.iter().enumerate() {
            let creator = creators[rng.random_range(0..creators.len())];
            let main = if rng.random_range(0.0..1.0) < 0.8 {
                pick_weighted(&mut rng, &users[creator].interests)
            } else {
                rng.random_range(0..nt)
            };
            let second = rng.random_range(0..nt);
            let mut topics = vec![config.topics[main].clone()];
            if second != main && rng.random_range(0.0..1.0) < 0.3 {
                topics.push(config.topics[second].clone());
            }
            let mut v: Vec<f32> = (0..dim)
                .map(|d| {
                    centres[main][d]
                        + 0.35 * centres[second][d] * f32::from(u8::from(topics.len() > 1))
                        + 0.6 * normal(&mut rng)
                })
                .collect();
            let norm = v
                .iter()
                .map(|x| x * x)
                .sum::<f32>()
                .sqrt()
                .max(f32::MIN_POSITIVE);
            v.iter_mut().for_each(|x| *x /= norm);
            let subject_list = subjects(config.topics[main].as_str());
            let subject = if subject_list.is_empty() {
                config.topics[main].as_str().replace('_', " ")
            } else {
                subject_list[rng.random_range(0..subject_list.len())].to_owned()
            };
            let caption = FRAMES[rng.random_range(0..FRAMES.len())].replace("{}", &subject);
            let remix_of = (n > 0 && rng.random_range(0.0..1.0) < config.remix_share).then(|| {
                let same: Vec<usize> = (0..n).filter(|&j| video_topic[j] == main).collect();
                let j = if same.is_empty() {
                    rng.random_range(0..n)
                } else {
                    same[rng.random_range(0..same.len())]
                };
                vid(j)
            });
            let mut cameos = Vec::new();
            if !consenting.is_empty() && rng.random_range(0.0..1.0) < config.cameo_share {
                for _ in 0..rng.random_range(1..=2) {
                    let p = uid(consenting[rng.random_range(0..consenting.len())]);
                    if !cameos.contains(&p) {
                        cameos.push(p);
                    }
                }
            }
            let safety: Vec<SafetyLabel> =
                topics.iter().filter_map(|t| label_of(t.as_str())).collect();
            let audience = match rng.random_range(0..20) {
                0 => Audience::Followers,
                1 => Audience::Mutuals,
                _ => Audience::Public,
            };
            videos.push(Video {
                id: vid(n),
                creator: uid(creator),
                created_at: Timestamp::from_second(at).unwrap_or(config.now),
                duration_s: rng.random_range(5.0..90.0f32).round(),
                caption,
                topics,
                embedding: Embedding::new("embedding", &v, dim).ok(),
                remix_of,
                cameos,
                safety,
                audience,
                deleted: false,
            });
            video_topic.push(main);
        }

        let consents = users
            .iter()
            .filter(|u| u.consent != ConsentScope::Nobody)
            .map(|u| ConsentGrant {
                person: u.user.id.clone(),
                scope: u.consent,
            })
            .collect();

        // Revocations by some featured people.
        let mut revocations = Vec::new();
        for v in &videos {
            for p in &v.cameos {
                if rng.random_range(0.0..1.0) < config.revocation_share {
                    revocations.push(if rng.random_range(0..2) == 0 {
                        Revocation::Video {
                            person: p.clone(),
                            video: v.id.clone(),
                        }
                    } else {
                        Revocation::Creator {
                            person: p.clone(),
                            creator: v.creator.clone(),
                        }
                    });
                }
            }
        }

        // Events: each user engages with videos of their interests posted before the event.
        let mut events = Vec::new();
        let by_video_topic: Vec<Vec<usize>> = (0..nt)
            .map(|t| (0..videos.len()).filter(|&j| video_topic[j] == t).collect())
            .collect();
        if !videos.is_empty() {
            for (i, u) in users.iter().enumerate() {
                let n = rng.random_range(0..=2 * config.events_per_user);
                for _ in 0..n {
                    let t = if rng.random_range(0.0..1.0) < 0.85 {
                        pick_weighted(&mut rng, &u.interests)
                    } else {
                        rng.random_range(0..nt)
                    };
                    let pool = &by_video_topic[t];
                    let j = if pool.is_empty() {
                        rng.random_range(0..videos.len())
                    } else {
                        pool[rng.random_range(0..pool.len())]
                    };
                    let posted = videos[j].created_at.as_second();
                    let at =
                        Timestamp::from_second(rng.random_range(posted..=config.now.as_second()))
                            .unwrap_or(config.now);
                    let video = videos[j].id.clone();
                    let duration_ms = (videos[j].duration_s * 1000.0) as u64;
                    let r = rng.random_range(0..1000);
                    let kind = match r {
                        0..=579 => {
                            let completed = rng.random_range(0.0..1.0) < 0.45;
                            EventKind::View {
                                video,
                                watch_ms: if completed {
                                    duration_ms
                                } else {
                                    rng.random_range(500..=duration_ms.max(501))
                                },
                                completed,
                            }
                        }
                        580..=729 => EventKind::Like { video },
                        730..=779 => EventKind::Comment { video },
                        780..=809 => EventKind::Share { video },
                        810..=829 => EventKind::Remix {
                            video,
                            new_video: None,
                        },
                        830..=839 => EventKind::CameoUse { video },
                        840..=849 => EventKind::Create { video: Some(video) },
                        850..=959 => EventKind::Skip { video },
                        960..=979 => EventKind::Follow { video },
                        _ => EventKind::NotInterested { video },
                    };
                    // The feed showed it first; a quick swipe-away is an impression too.
                    events.push((
                        at,
                        i,
                        EventKind::Impression {
                            video: videos[j].id.clone(),
                        },
                    ));
                    events.push((at, i, kind));
                    // Videos scrolled past without engaging: about three impressions per
                    // engagement, so action rates per impression look like a real feed's.
                    for _ in 0..2 {
                        let k = pool
                            .get(rng.random_range(0..pool.len().max(1)))
                            .copied()
                            .unwrap_or(j);
                        let posted = videos[k].created_at.as_second();
                        let at = Timestamp::from_second(
                            rng.random_range(posted..=config.now.as_second()),
                        )
                        .unwrap_or(config.now);
                        events.push((
                            at,
                            i,
                            EventKind::Impression {
                                video: videos[k].id.clone(),
                            },
                        ));
                    }
                }
            }
        }
        events.sort_by(|a, b| a.0.cmp(&b.0).then(a.1.cmp(&b.1)));
        let events = events
            .into_iter()
            .enumerate()
            .map(|(n, (at, i, kind))| Event {
                key: EventKey::new(format!("e{n}"))
                    .unwrap_or_else(|_| unreachable!("e<n> is a valid key")),
                user: uid(i),
                at,
                kind,
            })
            .collect();

        World {
            users,
            videos,
            video_topic,
            follows: follows.into_iter().map(|(a, b)| (uid(a), uid(b))).collect(),
            consents,
            revocations,
            events,
            config,
        }
    }

    /// Replaces every video's embedding with one computed from its caption by `embed`
    /// (for example the language model), in batches of `batch`.
    pub fn reembed<E>(
        &mut self,
        batch: usize,
        mut embed: impl FnMut(&[&str]) -> Result<Vec<Embedding>, E>,
    ) -> Result<(), E> {
        let captions: Vec<String> = self.videos.iter().map(|v| v.caption.clone()).collect();
        for (chunk_i, chunk) in captions.chunks(batch.max(1)).enumerate() {
            let refs: Vec<&str> = chunk.iter().map(String::as_str).collect();
            let vectors = embed(&refs)?;
            for (k, e) in vectors.into_iter().enumerate() {
                if let Some(v) = self.videos.get_mut(chunk_i * batch.max(1) + k) {
                    v.embedding = Some(e);
                }
            }
        }
        Ok(())
    }
}
