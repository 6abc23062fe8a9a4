//! Caption templates: a few subjects per topic and varied frames around them.

/// Subjects per topic; topics not listed use their own name.
pub(crate) fn subjects(topic: &str) -> &'static [&'static str] {
    match topic {
        "comedy" => &[
            "a cat doing stand-up",
            "the worst prank ever",
            "office meme sketch",
        ],
        "cooking" => &[
            "sourdough bread from scratch",
            "5-minute ramen upgrade",
            "grandma's lasagna recipe",
        ],
        "pets" => &[
            "a corgi learning to fetch",
            "kittens vs a laser pointer",
            "a parrot that talks back",
        ],
        "wildlife" => &[
            "humpback whales breaching",
            "a lion pride at dawn",
            "hummingbirds in slow motion",
        ],
        "dance" => &[
            "a new dance challenge",
            "hip hop choreography",
            "ballet on a rooftop",
        ],
        "music" => &[
            "a lo-fi beat made live",
            "acoustic guitar cover",
            "a choir in a subway",
        ],
        "gaming" => &[
            "a speedrun world record",
            "minecraft castle build",
            "esports final clutch",
        ],
        "anime" => &[
            "an anime-style sword duel",
            "a manga panel come alive",
            "studio-style sky scene",
        ],
        "sports" => &[
            "the best plays of the week",
            "a marathon finish",
            "a tennis rally",
        ],
        "soccer" => &[
            "a bicycle kick goal",
            "penalty shootout drama",
            "street soccer skills",
        ],
        "basketball" => &[
            "a buzzer-beater three",
            "a slam dunk contest",
            "streetball crossovers",
        ],
        "fitness" => &[
            "a 10-minute ab workout",
            "gym progress in 30 days",
            "yoga flow for beginners",
        ],
        "extreme_sports" => &[
            "skateboarding down a volcano",
            "big wave surfing",
            "wingsuit over fjords",
        ],
        "beauty" => &[
            "a glowing skincare routine",
            "bold eyeliner tutorial",
            "hair braid in one minute",
        ],
        "fashion" => &[
            "streetwear outfit ideas",
            "thrift flip of a denim jacket",
            "runway walk in the rain",
        ],
        "travel" => &[
            "hidden beaches of Portugal",
            "48 hours in Tokyo",
            "a night train across the Alps",
        ],
        "cars" => &[
            "a vintage car restoration",
            "supercar launch control",
            "drifting on ice",
        ],
        "tech" => &[
            "a phone built from scratch",
            "coding a game in an hour",
            "the tiniest computer",
        ],
        "science" => &[
            "a black hole explained",
            "elephant toothpaste experiment",
            "Mars rover landing",
        ],
        "diy" => &[
            "a bookshelf from pallets",
            "fixing a leaky faucet",
            "epoxy river table",
        ],
        "art" => &[
            "a watercolor city skyline",
            "speed painting a portrait",
            "clay sculpture timelapse",
        ],
        "film" => &[
            "a movie trailer remake",
            "a noir detective scene",
            "behind the scenes of a heist film",
        ],
        "politics" => &[
            "election night recap",
            "a debate in 60 seconds",
            "parliament explained",
        ],
        "finance" => &[
            "budgeting on a student income",
            "stocks explained with candy",
            "crypto in 2 minutes",
        ],
        "parenting" => &[
            "toddler bedtime hacks",
            "first steps of a baby",
            "packing lunch for three kids",
        ],
        "relationships" => &[
            "a first date gone right",
            "couples trying a challenge",
            "a proposal on a mountain",
        ],
        "horror" => &[
            "a haunted hallway at 3am",
            "creepy doll comes alive",
            "jump scare in the attic",
        ],
        "asmr" => &[
            "soft tapping on wood",
            "whispered book reading",
            "slime crunching sounds",
        ],
        "home" => &[
            "a tiny apartment makeover",
            "cleaning a messy garage",
            "cozy bedroom decor",
        ],
        "gardening" => &[
            "growing tomatoes on a balcony",
            "a monstera repotting",
            "a wildflower meadow",
        ],
        "history" => &[
            "ancient Rome in a minute",
            "the fall of the Berlin wall",
            "how pyramids were built",
        ],
        "motivation" => &[
            "a 5am morning routine",
            "never give up speech",
            "from zero to marathon",
        ],
        "vlogs" => &[
            "a day in my life",
            "moving to a new city vlog",
            "what I eat in a day",
        ],
        "magic" => &[
            "a vanishing coin trick",
            "card trick on the street",
            "levitation illusion",
        ],
        "weight_loss" => &[
            "a 30-day diet challenge",
            "calorie counting tips",
            "weight loss journey",
        ],
        "violence" => &[
            "a street fight caught on camera",
            "a brutal boxing knockout",
            "a movie brawl scene",
        ],
        "mature" => &[
            "an explicit adult scene",
            "a late-night adult skit",
            "an uncensored adult clip",
        ],
        "sad" => &[
            "saying goodbye to an old dog",
            "a heartbreak story",
            "a letter never sent",
        ],
        "ai_art" => &[
            "a prompt-to-painting timelapse",
            "an AI dreamscape",
            "a generative art loop",
        ],
        _ => &[],
    }
}

/// Frames around a subject; `{}` is the subject.
pub(crate) const FRAMES: &[&str] = &[
    "{}",
    "POV: {}",
    "AI-generated: {}",
    "{}, but make it cinematic",
    "watch till the end: {}",
    "{} in 15 seconds",
    "day 3 of {}",
    "nobody expected {}",
    "{} (remix welcome)",
    "tried {} and it worked",
];
