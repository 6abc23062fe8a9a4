#!/usr/bin/env python3
"""Builds the steering reader's corpus, `data/reader/corpus.jsonl`.

Two sources go in:

* `data/reader/hand.jsonl`: hand-written preferences, each in a paraphrase family
  (lines that say the same thing in different words);
* systematic variation: the construction groups below (negations, intensifiers,
  "only/just/nothing but", following and friends, two-topic requests, slots) filled
  with the target phrases of `data/reader/phrases.tsv`, with seeded slang, typos and
  rambling around them. A construction group is one family: holding it out holds
  out a way of saying something, not one sentence.

Each family goes wholly to `train` or to `holdout` by a hash of its name, so training
never sees a held-out paraphrase. Lines of the project's test sets (the dev set in
`../shared`, the tune, held-out and blind sets under `crates/steer/tests/data`) are
never in the corpus: the generator stops with an error when a source line is one of them
(compared in lower case, letters and digits only), so the corpus does not depend on
whether `../shared` is there.

Deterministic: the same inputs give the same bytes. Run `make corpus` (or this script)
and then `steerfeed prefs train` to rebuild the reader's weights.
"""

import hashlib
import json
import random
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "data" / "reader"
HOLDOUT_SHARE = 0.2
SEED = 20261202

# (family, expected lists for {x} and {y}, templates). The lists name where each
# target's topic goes: "boost", "reduce", "exclude", "only".
GROUPS = [
    ("more", ["boost"], [
        "more {x}", "more {x} please", "gimme more {x}", "i want more {x}",
        "show me more {x}", "can i get more {x}", "need more {x} in my feed",
    ]),
    ("lots-more", ["boost"], [
        "way more {x}", "a lot more {x}", "tons of {x}", "so much more {x} pls",
        "loads more {x}", "way way more {x}", "give me a ton of {x}",
    ]),
    ("bit-more", ["boost"], [
        "a bit more {x}", "slightly more {x}", "a tad more {x}", "a little more {x} maybe",
        "maybe a touch more {x}", "bit more {x}",
    ]),
    ("love", ["boost"], [
        "i love {x}", "i'm really into {x}", "big fan of {x}", "obsessed with {x} lately",
        "{x} is my thing", "i adore {x}", "been loving {x}",
    ]),
    ("cant-get-enough", ["boost"], [
        "can't get enough of {x}", "i could watch {x} all day", "never enough {x}",
        "i never get tired of {x}", "cant get enough {x}", "there's no such thing as too much {x}",
    ]),
    ("wouldnt-mind", ["boost"], [
        "i wouldn't mind more {x}", "don't mind some {x}", "not against more {x}",
        "i wouldn't say no to {x}", "wouldn't hate a bit of {x}", "no complaints about more {x}",
    ]),
    ("bare", ["boost"], [
        "{x}", "{x} pls", "{x}!!", "{x} content", "{x} videos", "{x} clips",
    ]),
    ("bring-on", ["boost"], [
        "bring on the {x}", "keep the {x} coming", "fill my feed with {x}",
        "load me up on {x}", "hit me with {x}", "i'm here for the {x}",
    ]),
    ("less", ["reduce"], [
        "less {x}", "fewer {x} videos", "less {x} please", "a bit less {x}",
        "slightly less {x}", "less of the {x}",
    ]),
    ("way-less", ["reduce"], [
        "way less {x}", "a lot less {x}", "cut {x} way down", "much less {x}",
        "far fewer {x} posts", "drastically less {x}",
    ]),
    ("tone-down", ["reduce"], [
        "tone down the {x}", "dial back the {x}", "not so much {x}", "cut back on {x}",
        "ease up on the {x}", "turn down the {x} a notch",
    ]),
    ("tired-of", ["reduce"], [
        "i'm kinda tired of {x}", "getting bored of {x}", "too much {x} lately",
        "sick of all the {x}", "had my fill of {x} for now", "{x} is getting old",
    ]),
    ("not-for-me", ["reduce"], [
        "{x} is not really for me", "not a huge fan of {x}", "{x} is ok but not that often",
        "i can live without so much {x}", "{x} not for me, much less of it",
        "meh on {x}, less please",
    ]),
    ("no", ["exclude"], [
        "no {x}", "no more {x}", "zero {x}", "no {x} ever", "no {x} whatsoever",
        "none of the {x}",
    ]),
    ("never-show", ["exclude"], [
        "never show me {x}", "don't show me {x}", "stop showing {x}", "hide all {x}",
        "dont show me any {x}", "quit showing me {x}",
    ]),
    ("hate", ["exclude"], [
        "i hate {x}", "can't stand {x}", "{x} makes me cringe, block it",
        "i never want to see {x} again", "i despise {x}", "ugh {x}, never again",
    ]),
    ("dont-care", ["exclude"], [
        "don't care about {x} at all", "i couldn't care less about {x}",
        "not interested in {x} whatsoever", "{x} bores me to death, get rid of it",
        "zero interest in {x}", "i do not care for {x} at all",
    ]),
    ("keep-away", ["exclude"], [
        "keep {x} away from me", "get rid of {x}", "remove {x} from my feed",
        "filter out {x}", "block {x}", "ban {x} from my feed",
    ]),
    ("anything-but", ["exclude"], [
        "anything but {x}", "everything except {x}", "whatever you want but not {x}",
        "any topic except {x}", "all good except {x}", "show whatever, just not {x}",
    ]),
    ("only", ["only"], [
        "only {x}", "only {x} please", "{x} only", "solely {x}", "only ever {x}",
        "i want only {x}",
    ]),
    ("just-nothing-else", ["only"], [
        "just {x}, nothing else", "just {x} and that's it", "{x} and nothing else",
        "nothing but {x}", "just {x} nothing else", "{x}, and only that",
    ]),
    ("exclusively", ["only"], [
        "exclusively {x}", "i only want {x}", "my feed should be all {x}",
        "100% {x}, nothing else", "all {x} all the time, nothing else",
        "purely {x} from now on",
    ]),
    ("strictly", ["only"], [
        "only show me {x} from now on", "strictly {x}", "{x}, that's all i want",
        "just {x} pls nothing more", "{x} and that's it", "give me {x} and nothing else",
    ]),
    ("more-less", ["boost", "reduce"], [
        "more {x}, less {y}", "more {x} and fewer {y}", "{x} yes, {y} not so much",
        "more {x} please and less {y}", "up the {x}, cut down on {y}",
        "way more {x}, a bit less {y}",
    ]),
    ("more-no", ["boost", "exclude"], [
        "more {x} but no {y}", "love {x}, hate {y}", "{x} please, never {y}",
        "more {x}. no {y} at all", "{x} is great but block {y}",
        "gimme {x}, get rid of {y}",
    ]),
    ("less-more", ["reduce", "boost"], [
        "less {x}, more {y}", "fewer {x} and more {y}", "tone down the {x}, i want {y}",
        "cut back on {x} and show me {y}", "not so much {x}, more {y} instead",
        "a bit less {x} and a lot more {y}",
    ]),
    ("no-no", ["exclude", "exclude"], [
        "no {x} and no {y}", "block {x} and {y}", "never {x} or {y}",
        "don't show {x} or {y}", "no {x}, no {y}", "i hate {x} and {y}",
    ]),
    ("more-more", ["boost", "boost"], [
        "more {x} and {y}", "{x} and {y} please", "i love {x} and {y}",
        "more {x} plus {y}", "way more {x} and {y}", "{x}, {y}, that kind of stuff",
    ]),
    ("only-no", ["only", "exclude"], [
        "only {x}, no {y}", "just {x}, never {y}", "nothing but {x} and definitely no {y}",
    ]),
]

# Only one topic and never another, in one text: taught apart from the held-out
# "only-no" family (other templates, both orders), generated with their own seed so the
# lines above stay as they were.
MIXED_ONLY_GROUPS = [
    ("only-never", ["only", "exclude"], [
        "only {x} please and no {y}", "{x} only, zero {y}", "i want only {x}. keep {y} out",
        "nothing except {x}, and block {y}", "just {x} from now on, no more {y}",
        "exclusively {x} but never {y}", "only {x} please, no {y} whatsoever",
        "strictly {x}, remove {y}",
    ]),
    ("never-only", ["exclude", "only"], [
        "no {x}, only {y}", "never {x}, just {y}", "block {x} and show only {y}",
        "no more {x}. only {y} from now on", "get rid of {x}, i want nothing but {y}",
        "zero {x}, {y} only",
    ]),
]

# Litotes: a negated objection is a mild request ("i have nothing against {x}"). Their own
# seed, like the group above.
LITOTES_GROUPS = [
    ("litotes", ["boost"], [
        "i'm not opposed to {x}", "i have nothing against {x}",
        "it wouldn't hurt to see more {x}", "wouldn't object to some {x}",
        "can't say i dislike {x}", "no objections to more {x}",
        "i'd not complain about {x}", "no problem with more {x}",
        "never say no to {x}", "{x} doesn't bother me at all, bring it",
    ]),
]

# More ways to ask for more, less or none of something. Their own seed.
MORE_WAYS_GROUPS = [
    ("requests", ["boost"], [
        "i'm here for {x}", "give me all the {x}", "i want my feed full of {x}",
        "{x} all day every day", "send me {x}", "put more {x} on my feed",
        "can we get some {x}", "i'd like to see {x}", "recommend me {x}",
    ]),
    ("ease-off", ["reduce"], [
        "ease off the {x}", "go easy on the {x}", "a break from {x} would be nice",
        "{x} is getting old, less of it", "i've seen enough {x}", "scale back the {x}",
    ]),
    ("purge", ["exclude"], [
        "i never want to see {x} again", "{x} is dead to me", "purge {x} from my feed",
        "spare me the {x}", "banish {x}", "{x}? absolutely not",
    ]),
]

# More ways to name the slots, alone and beside a topic. Their own seed.
MORE_SLOT_GROUPS = [
    ("friends-more-2", {"friends_cameos": True}, [
        "more clips with my pals in them", "my besties showing up in videos please",
        "i love when my crew appears in stuff", "show me my homies' cameos",
        "videos my close friends are in",
    ]),
    ("friends-less-2", {"friends_cameos": False}, [
        "hide my friends' cameos", "no more videos starring my buddies",
        "enough of my pals popping up", "i'm tired of seeing my mates in every clip",
    ]),
    ("follow-more-2", {"following": "more"}, [
        "stick to the accounts i follow", "mostly my subscriptions please",
        "less randoms, more of my follows", "my favorite creators first, not strangers",
    ]),
    ("follow-less-2", {"following": "less"}, [
        "fewer of my usual creators", "show me accounts i've never seen",
        "i want randoms, not my follows", "get me out of my bubble, new people please",
        "less from my subscriptions",
    ]),
    ("remix-less-2", {"remix": False}, [
        "fewer remixes", "no more duets please", "i'm tired of remixed stuff",
    ]),
    ("originals", {"remix": False}, [
        "originals over remixes", "only original videos, no remixes",
        "give me original content instead of remixes",
    ]),
    ("remix-more-2", {"remix": True}, [
        "more duets and stitches", "keep the remix chains coming", "i like seeing remixes",
    ]),
    ("friends-topic", {"friends_cameos": True, "boost": ["{x}"]}, [
        "more {x} and more videos with my friends in them", "{x} plus clips my buddies are in",
    ]),
    ("topic-strangers", {"following": "less", "boost": ["{x}"]}, [
        "{x} from creators i don't follow", "{x} by people i've never seen",
    ]),
    # Texts that ask for nothing: introductions and small talk, names in them.
    ("introductions", {}, [
        "hi, my name is sam", "hey i'm alex and i'm new here",
        "my name is jordan, nice to meet you", "i'm priya from texas",
        "my dog is called max", "this is my first time using this",
    ]),
    ("small-talk", {}, [
        "good morning everyone", "i just downloaded the app", "happy friday",
        "hey it's me again, chris", "how's everyone doing today",
    ]),
]

# How strongly each single-request family asks: the label of the reader's intensity
# head. Families that mix strengths ("i'm kinda tired of") have none.
INTENSITY = {
    "bit-more": "mild", "wouldnt-mind": "mild", "litotes": "mild",
    "lots-more": "strong", "cant-get-enough": "strong", "way-less": "strong",
    "more": "normal", "love": "normal", "bare": "normal", "bring-on": "normal",
    "less": "normal", "tone-down": "normal", "requests": "normal", "ease-off": "normal",
    "not-for-me": "normal",
}

# (family, expect, templates) for slots, alone or with a boosted {x}.
SLOT_GROUPS = [
    ("follow-more", {"following": "more"}, [
        "more from people i follow", "show me my follows first",
        "prioritize the creators i follow", "more from accounts i'm following and fewer randoms",
        "people i actually follow, not strangers", "i want to see the people i follow more",
        "the creators i subscribe to should come first",
    ]),
    ("follow-less", {"following": "less"}, [
        "less from people i follow, more new creators",
        "show me strangers, not the same accounts i follow",
        "i want to discover new creators", "fewer videos from people i already follow",
        "new faces please, less of the folks i follow",
        "help me find creators i don't follow yet",
    ]),
    ("friends-cameos", {"friends_cameos": True}, [
        "videos where my friends show up", "more cameos of my friends",
        "show me clips my buddies appear in", "stuff with my friends in it",
        "i want to see my friends' cameos", "videos featuring my mates",
    ]),
    ("friends-cameos-less", {"friends_cameos": False}, [
        "fewer videos with my friends in them", "less of my friends' cameos",
        "stop putting my friends' cameos everywhere", "not so many clips starring my buddies",
    ]),
    ("follow-more-topic", {"following": "more", "boost": ["{x}"]}, [
        "more {x} from people i follow", "{x} from the creators i follow please",
        "show me {x} by accounts i follow",
    ]),
    ("short", {"max_duration_s": 60}, [
        "nothing longer than a minute", "keep videos under a minute",
        "max 60 seconds per video", "nothing over 1 min",
    ]),
    ("short-topic", {"max_duration_s": 30, "boost": ["{x}"]}, [
        "more {x} but under 30 seconds", "{x} clips, nothing longer than 30 seconds",
        "short {x} videos, max 30 sec",
    ]),
    ("fresh", {"freshness": "newer"}, [
        "newest uploads first", "show me fresh stuff", "only recent videos",
        "the latest videos please",
    ]),
    ("remix", {"remix": True}, [
        "more remixes", "show me remixes of other videos", "i love remix chains",
    ]),
    ("nothing", {}, [
        "what is this", "lol ok", "idk", "hello there", "test", "how does this work",
        "asdfgh", "ok", "thanks",
    ]),
]

SLANG = ["", "", "", " pls", " fr", " ngl", " lol", "!!", " tbh", " rn", " 🙏", " thx"]
LEADS = ["", "", "", "", "ok so ", "honestly ", "hey, ", "um ", "yo "]
RAMBLE = [
    "i've been scrolling way too long tonight. ",
    "my feed has been weird lately. ",
    "so my cousin showed me this app. ",
    "been using this after work to unwind. ",
]


def typo(rng, phrase):
    """One letter dropped from a word of five letters or more."""
    words = phrase.split(" ")
    long = [i for i, w in enumerate(words) if len(w) >= 5 and w.isalpha()]
    if not long:
        return phrase
    i = rng.choice(long)
    w = words[i]
    j = rng.randrange(1, len(w) - 1)
    words[i] = w[:j] + w[j + 1:]
    return " ".join(words)


def decorate(rng, text):
    if rng.random() < 0.12:
        text = rng.choice(RAMBLE) + text
    else:
        text = rng.choice(LEADS) + text
    text += rng.choice(SLANG)
    if rng.random() < 0.15:
        text = text.capitalize()
    return text


def split_of(family):
    h = hashlib.sha256(family.encode()).digest()
    return "holdout" if h[0] < int(256 * HOLDOUT_SHARE) else "train"


def load_phrases():
    by_topic = {}
    for line in (DATA / "phrases.tsv").read_text().splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        topic, phrase = line.split("\t")
        by_topic.setdefault(topic.strip(), []).append(phrase.strip())
    return by_topic


def expect_of(lists, topics):
    out = {}
    for key, t in zip(lists, topics):
        out.setdefault(key, [])
        if t not in out[key]:
            out[key].append(t)
    return out


def generate(rng, by_topic, groups=None):
    topics = sorted(by_topic)
    lines = []
    for family, lists, templates in GROUPS if groups is None else groups:
        for template in templates:
            for _ in range(5 if len(lists) == 1 else 4):
                chosen = rng.sample(topics, len(lists))
                phrases = [rng.choice(by_topic[t]) for t in chosen]
                clean = list(phrases)
                if rng.random() < 0.15:
                    phrases[0] = typo(rng, phrases[0])
                text = template.replace("{x}", phrases[0])
                if len(phrases) > 1:
                    text = text.replace("{y}", phrases[1])
                line = {
                    "text": decorate(rng, text),
                    "expect": expect_of(lists, chosen),
                    "family": f"t-{family}",
                    "phrases": list(zip(chosen, clean)),
                }
                if family in INTENSITY:
                    line["intensity"] = INTENSITY[family]
                lines.append(line)
    if groups is not None:
        return lines
    return lines + generate_slots(rng, by_topic, SLOT_GROUPS)


def generate_slots(rng, by_topic, groups):
    topics = sorted(by_topic)
    lines = []
    for family, expect, templates in groups:
        for template in templates:
            for _ in range(3 if "{x}" in template else 2):
                e = json.loads(json.dumps(expect))
                text = template
                used = []
                if "{x}" in template:
                    t = rng.choice(topics)
                    phrase = rng.choice(by_topic[t])
                    text = template.replace("{x}", phrase)
                    e["boost"] = [t]
                    used.append((t, phrase))
                lines.append({
                    "text": decorate(rng, text) if expect else text,
                    "expect": e,
                    "family": f"t-{family}",
                    "phrases": used,
                })
    return lines


def key(text):
    """A text as the comparison with the test sets sees it: lower case, letters and
    digits only, single spaces (so a line differing only in punctuation still matches)."""
    return " ".join("".join(c if c.isalnum() else " " for c in text.lower()).split())


def test_texts():
    """Texts of the project's test sets, which the corpus must not hold."""
    paths = list((ROOT / "crates" / "steer" / "tests" / "data").glob("prefs-*.jsonl"))
    dev = ROOT.parent / "shared" / "data" / "steering" / "prefs-dev.jsonl"
    if dev.exists():
        paths.append(dev)
    out = set()
    for p in paths:
        for line in p.read_text().splitlines():
            if line.strip():
                out.add(key(json.loads(line)["text"]))
    return out


def write_vocabulary(lines):
    """Writes `data/reader/exemplars.tsv`: the target phrases of the training split's
    lines, by topic, as exemplars the topic matcher adds to the hand-written ones. Only
    the training split's: a phrase that only held-out lines use stays unknown. Both
    splits draw from one phrase pool, so many held-out lines share a phrase with these
    exemplars; `docs/benchmarks.md` scores the held-out lines with and without one."""
    by_topic = {}
    for d in lines:
        if split_of(d["family"]) != "train":
            continue
        for topic, phrase in d.get("phrases", []):
            by_topic.setdefault(topic, set()).add(phrase)
    path = DATA / "exemplars.tsv"
    head = ("# topic exemplars learned from the steering corpus: the target phrases of its\n"
            "# training split, by topic (written by scripts/steer_corpus.py; do not edit)\n")
    path.write_text(head + "".join(
        f"{t}\t{', '.join(sorted(by_topic[t]))}\n" for t in sorted(by_topic)))


def main():
    rng = random.Random(SEED)
    by_topic = load_phrases()
    lines = []
    for line in (DATA / "hand.jsonl").read_text().splitlines():
        if line.strip():
            d = json.loads(line)
            lines.append({"text": d["text"], "expect": d["expect"], "family": d["family"]})
    lines += generate(rng, by_topic)
    lines += generate(random.Random(SEED + 1), by_topic, MIXED_ONLY_GROUPS)
    lines += generate(random.Random(SEED + 2), by_topic, LITOTES_GROUPS)
    lines += generate_slots(random.Random(SEED + 3), by_topic, MORE_SLOT_GROUPS)
    lines += generate(random.Random(SEED + 4), by_topic, MORE_WAYS_GROUPS)
    forbidden = test_texts()
    clashes = sorted({d["text"] for d in lines if key(d["text"]) in forbidden})
    if clashes:
        sys.exit("steer_corpus: lines of a test set in the corpus sources: "
                 + "; ".join(map(repr, clashes)))
    seen = set()
    out = []
    for d in lines:
        k = key(d["text"])
        if k in seen:
            continue
        seen.add(k)
        d["audience"] = "adult"
        d["split"] = split_of(d["family"])
        out.append({k: d[k] for k in ("text", "audience", "expect", "family", "split",
                                      "intensity") if k in d})
    path = DATA / "corpus.jsonl"
    path.write_text("".join(json.dumps(d, ensure_ascii=False) + "\n" for d in out))
    write_vocabulary(lines)
    holdout = sum(d["split"] == "holdout" for d in out)
    families = len({d["family"] for d in out})
    print(f"{path.relative_to(ROOT)}: {len(out)} lines, {families} families, "
          f"{holdout} held out", file=sys.stderr)


if __name__ == "__main__":
    main()
