#!/usr/bin/env python3
"""Write data/raw/home_commands.jsonl: home-assistant requests and their JSON commands.

Each row is {"request": "...", "command": "..."}; `command` is
json.dumps({"action", "device", "room", "time"}, ensure_ascii=False) in that key order.
data/home_commands.md is the data card: the schema, the word-to-value rules and the counts.

Everything is hand-written below: the vocabulary (verbs per action, nouns per device, names
per room, time expressions) and several hundred sentence frames. A row is made by drawing an
(action, device) pair, maybe a room, maybe a clock time, a frame that fits them, and a
surface style (casing, punctuation, typed shorthand), with random.Random(2026), so the
output is the same bytes on every run.

    python scripts/make_home_commands.py            # write the file (atomically)
    python scripts/make_home_commands.py --check    # regenerate in memory and verify the file

Standard library only (Python 3.11).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import sys
import tempfile
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

SEED = 2026
TARGET_ROWS = 2500
TIME_SHARE = 0.40
OUT = Path(__file__).resolve().parent.parent / "data" / "raw" / "home_commands.jsonl"
KEYS = ("action", "device", "room", "time")

# --------------------------------------------------------------------------------------
# Actions and the words that express them.
#
# Rule: the action is the verb (or the state word) of the request. A verb entry is
#   head, particle -- "turn" + "off"; contiguous "turn off the X", split "turn the X off"
#   part           -- past participle for "I want the X turned off" (None: not used)
#   contig         -- may stand before its object ("send home the roomba" may not)
#   trans          -- takes an object; intransitive-only entries ("come on") have False
#   intr           -- may be used without an object: "set the X to come on at 7 am"
#   devices        -- only these devices (None: every device that allows the action)
# Most words belong to exactly one action. The few shared heads are told apart by the
# particle ("turn on / off / up / down", "shut off" vs "shut") or by the device, since each
# device allows only some actions ("lower the lights" = dim, "lower the blinds" = close;
# "lights down" = dim, "blinds down" = close).
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Verb:
    head: str
    particle: str = ""
    part: str | None = None
    contig: bool = True
    trans: bool = True
    intr: bool = False
    devices: tuple[str, ...] | None = None


GERUND = {
    "abort": "aborting",
    "activate": "activating",
    "begin": "beginning",
    "bolt": "bolting",
    "boot": "booting",
    "brighten": "brightening",
    "bring": "bringing",
    "call": "calling",
    "cancel": "cancelling",
    "close": "closing",
    "come": "coming",
    "crack": "cracking",
    "cut": "cutting",
    "deactivate": "deactivating",
    "dim": "dimming",
    "draw": "drawing",
    "fire": "firing",
    "flick": "flicking",
    "get": "getting",
    "go": "going",
    "halt": "halting",
    "head": "heading",
    "kick": "kicking",
    "kill": "killing",
    "lift": "lifting",
    "lock": "locking",
    "lower": "lowering",
    "open": "opening",
    "part": "parting",
    "power": "powering",
    "pull": "pulling",
    "put": "putting",
    "raise": "raising",
    "roll": "rolling",
    "run": "running",
    "secure": "securing",
    "send": "sending",
    "shut": "shutting",
    "start": "starting",
    "stop": "stopping",
    "switch": "switching",
    "tone": "toning",
    "turn": "turning",
    "unbolt": "unbolting",
    "unlock": "unlocking",
}

SWITCHED = ("light", "fan", "heater", "air_conditioner", "tv", "speaker")
NOT_LIGHT = ("fan", "heater", "air_conditioner", "tv", "speaker")
ROLLING = ("blinds", "garage_door")

VERBS: dict[str, list[Verb]] = {
    "turn_on": [
        Verb("turn", "on", "turned on", intr=True),
        Verb("switch", "on", "switched on", intr=True),
        Verb("put", "on", "put on", devices=SWITCHED),
        Verb("power", "on", "powered on", intr=True),
        Verb("power", "up", "powered up", devices=NOT_LIGHT),
        Verb("fire", "up", "fired up", devices=NOT_LIGHT),
        Verb("activate", "", "activated"),
        Verb("flick", "on", "flicked on", devices=("light",)),
        Verb("boot", "up", "booted up", devices=("tv",)),
        Verb("come", "on", trans=False, intr=True),
        Verb("kick", "in", trans=False, intr=True, devices=("heater", "air_conditioner")),
    ],
    "turn_off": [
        Verb("turn", "off", "turned off", intr=True),
        Verb("switch", "off", "switched off", intr=True),
        Verb("shut", "off", "shut off", intr=True),
        Verb("power", "off", "powered off", intr=True),
        Verb("power", "down", "powered down", intr=True, devices=NOT_LIGHT),
        Verb("shut", "down", "shut down", devices=NOT_LIGHT),
        Verb("kill", "", "killed"),
        Verb("cut", "", "cut", devices=("light",)),
        Verb("deactivate", "", "deactivated"),
        Verb("flick", "off", "flicked off", devices=("light",)),
        Verb("go", "off", trans=False, intr=True),
    ],
    "dim": [
        Verb("dim", "", "dimmed", intr=True),
        Verb("dim", "down", "dimmed down", intr=True),
        Verb("turn", "down", "turned down"),
        Verb("lower", "", "lowered"),
        Verb("tone", "down", "toned down"),
        Verb("bring", "down", "brought down"),
    ],
    "brighten": [
        Verb("brighten", "", "brightened", intr=True),
        Verb("brighten", "up", "brightened up", intr=True),
        Verb("turn", "up", "turned up"),
        Verb("bring", "up", "brought up"),
    ],
    "open": [
        Verb("open", "", "opened", intr=True),
        Verb("open", "up", "opened up", intr=True),
        Verb("raise", "", "raised", devices=ROLLING),
        Verb("pull", "up", "pulled up", devices=ROLLING),
        Verb("roll", "up", "rolled up", intr=True, devices=ROLLING),
        Verb("lift", "", "lifted", devices=("garage_door",)),
        Verb("pull", "open", "pulled open", devices=("curtains", "blinds")),
        Verb("draw", "back", "drawn back", devices=("curtains",)),
        Verb("part", "", "parted", devices=("curtains",)),
        Verb("crack", "open", "cracked open", devices=("window",)),
        Verb("go", "up", trans=False, intr=True, devices=ROLLING),
    ],
    "close": [
        Verb("close", "", "closed", intr=True),
        Verb("shut", "", "shut", intr=True),
        Verb("lower", "", "lowered", devices=ROLLING),
        Verb("pull", "down", "pulled down", devices=ROLLING),
        Verb("roll", "down", "rolled down", intr=True, devices=ROLLING),
        Verb("pull", "shut", "pulled shut", devices=("curtains",)),
        Verb("pull", "closed", "pulled closed", devices=("curtains", "blinds")),
        Verb("come", "down", trans=False, intr=True, devices=ROLLING),
    ],
    "lock": [
        Verb("lock", "", "locked", intr=True),
        Verb("bolt", "", "bolted"),
        Verb("secure", "", "secured"),
    ],
    "unlock": [
        Verb("unlock", "", "unlocked", intr=True),
        Verb("unbolt", "", "unbolted"),
    ],
    "start": [
        Verb("start", "", "started", intr=True),
        Verb("start", "up", "started up", intr=True),
        Verb("run", "", None, intr=True),
        Verb("get", "going", None, contig=False),
        Verb("begin", "", None, trans=False, intr=True),
        Verb("send", "out", "sent out", devices=("robot_vacuum",)),
    ],
    "stop": [
        Verb("stop", "", "stopped", intr=True),
        Verb("halt", "", "halted"),
        Verb("cancel", "", "cancelled", devices=("coffee_maker", "dishwasher", "washing_machine")),
        Verb("abort", "", "aborted", devices=("dishwasher", "washing_machine")),
        Verb("call", "back", "called back", devices=("robot_vacuum",)),
        Verb("send", "home", "sent home", contig=False, devices=("robot_vacuum",)),
        Verb("head", "home", trans=False, intr=True, devices=("robot_vacuum",)),
    ],
}

# State words: "lights off", "I'd like the blinds open", "get the dishwasher running".
STATES: dict[str, list[tuple[str, tuple[str, ...] | None]]] = {
    "turn_on": [("on", None)],
    "turn_off": [("off", None)],
    "dim": [("dimmed", None), ("down", None), ("dimmer", None), ("low", None)],
    "brighten": [("up", None), ("brighter", None)],
    "open": [("open", None), ("opened", None), ("up", ROLLING)],
    "close": [("closed", None), ("shut", None), ("down", ROLLING)],
    "lock": [("locked", None)],
    "unlock": [("unlocked", None)],
    "start": [("running", None), ("going", None)],
    "stop": [("stopped", None)],
}

# --------------------------------------------------------------------------------------
# Devices: the nouns that name each one, (text, plural, weight). The device is the noun.
# --------------------------------------------------------------------------------------

INDOOR_ROOMS = (
    "kitchen",
    "living_room",
    "bedroom",
    "office",
    "dining_room",
    "kids_room",
    "basement",
)  # where a portable appliance (air conditioner, TV) may stand
ALL_ROOMS = (
    "kitchen",
    "living_room",
    "bedroom",
    "bathroom",
    "office",
    "hallway",
    "garage",
    "dining_room",
    "kids_room",
    "basement",
)


@dataclass(frozen=True)
class Device:
    name: str
    actions: tuple[str, ...]
    nouns: tuple[tuple[str, bool, int], ...]
    rooms: tuple[str, ...]
    room_share: float
    # nouns that already say where the thing is ("front door"): used only without a room
    placed_nouns: tuple[tuple[str, bool, int], ...] = ()


DEVICES: dict[str, Device] = {
    d.name: d
    for d in [
        Device(
            "light",
            ("turn_on", "turn_off", "dim", "brighten"),
            (
                ("lights", True, 4),
                ("light", False, 3),
                ("lamp", False, 2),
                ("lamps", True, 1),
                ("ceiling light", False, 1),
                ("ceiling lights", True, 1),
                ("overhead light", False, 1),
                ("overhead lights", True, 1),
                ("lighting", False, 1),
                ("main light", False, 1),
                ("big light", False, 1),
            ),
            ALL_ROOMS,
            0.6,
        ),
        Device(
            "fan",
            ("turn_on", "turn_off"),
            (
                ("fan", False, 4),
                ("ceiling fan", False, 2),
                ("desk fan", False, 1),
                ("standing fan", False, 1),
                ("floor fan", False, 1),
            ),
            ALL_ROOMS,
            0.6,
        ),
        Device(
            "heater",
            ("turn_on", "turn_off"),
            (
                ("heater", False, 4),
                ("heating", False, 2),
                ("space heater", False, 1),
                ("radiator", False, 1),
                ("electric heater", False, 1),
                ("portable heater", False, 1),
            ),
            ALL_ROOMS,
            0.6,
        ),
        Device(
            "air_conditioner",
            ("turn_on", "turn_off"),
            (
                ("air conditioner", False, 2),
                ("air conditioning", False, 2),
                ("AC", False, 2),
                ("aircon", False, 1),
                ("A/C", False, 1),
                ("air con", False, 1),
                ("AC unit", False, 1),
            ),
            INDOOR_ROOMS,
            0.6,
        ),
        Device(
            "tv",
            ("turn_on", "turn_off"),
            (
                ("TV", False, 4),
                ("television", False, 2),
                ("telly", False, 2),
                ("smart TV", False, 1),
                ("TV set", False, 1),
            ),
            INDOOR_ROOMS,
            0.6,
        ),
        Device(
            "speaker",
            ("turn_on", "turn_off"),
            (
                ("speaker", False, 3),
                ("speakers", True, 1),
                ("smart speaker", False, 1),
                ("sound system", False, 1),
                ("stereo", False, 1),
                ("soundbar", False, 1),
                ("bluetooth speaker", False, 1),
            ),
            ALL_ROOMS,
            0.6,
        ),
        Device(
            "blinds",
            ("open", "close"),
            (
                ("blinds", True, 4),
                ("blind", False, 1),
                ("shades", True, 1),
                ("roller blinds", True, 1),
                ("window blinds", True, 1),
            ),
            ("kitchen", "living_room", "bedroom", "bathroom", "office", "dining_room", "kids_room"),
            0.6,
        ),
        Device(
            "curtains",
            ("open", "close"),
            (("curtains", True, 4), ("drapes", True, 1), ("curtain", False, 1)),
            ("kitchen", "living_room", "bedroom", "office", "dining_room", "kids_room"),
            0.6,
        ),
        Device(
            "window",
            ("open", "close"),
            (("window", False, 4), ("windows", True, 2), ("skylight", False, 1)),
            (
                "kitchen",
                "living_room",
                "bedroom",
                "bathroom",
                "office",
                "hallway",
                "dining_room",
                "kids_room",
                "basement",
            ),
            0.6,
        ),
        # "garage door" names the device; it never carries a room (see the card).
        Device("garage_door", ("open", "close"), (("garage door", False, 1),), (), 0.0),
        Device(
            "door_lock",
            ("lock", "unlock"),
            (("door", False, 3), ("door lock", False, 1), ("smart lock", False, 1), ("deadbolt", False, 1)),
            ("kitchen", "hallway", "basement", "bedroom", "bathroom", "office"),
            0.35,
            placed_nouns=(
                ("front door", False, 5),
                ("back door", False, 2),
                ("side door", False, 1),
                ("front door lock", False, 1),
                ("patio door", False, 1),
            ),
        ),
        Device(
            "coffee_maker",
            ("start", "stop"),
            (
                ("coffee maker", False, 3),
                ("coffee machine", False, 2),
                ("espresso machine", False, 1),
                ("coffee pot", False, 1),
            ),
            ("kitchen", "office", "dining_room"),
            0.45,
        ),
        Device(
            "dishwasher", ("start", "stop"), (("dishwasher", False, 4), ("dish washer", False, 1)), ("kitchen",), 0.4
        ),
        Device(
            "washing_machine",
            ("start", "stop"),
            (("washing machine", False, 3), ("washer", False, 1), ("laundry machine", False, 1), ("laundry", False, 1)),
            ("kitchen", "bathroom", "basement", "garage"),
            0.5,
        ),
        Device(
            "robot_vacuum",
            ("start", "stop"),
            (
                ("robot vacuum", False, 2),
                ("Roomba", False, 2),
                ("robot hoover", False, 1),
                ("hoover robot", False, 1),
                ("robovac", False, 1),
                ("vacuum robot", False, 1),
                ("robot vac", False, 1),
                ("vacuum", False, 1),
            ),
            ("kitchen", "living_room", "bedroom", "bathroom", "office", "hallway", "dining_room", "kids_room"),
            0.6,
        ),
    ]
}

# How often each (action, device) pair is drawn: actions and devices roughly balanced, given
# that dim/brighten exist only for lights and lock/unlock only for the door lock.
PAIR_WEIGHTS: dict[tuple[str, str], float] = {
    ("turn_on", "light"): 3,
    ("turn_off", "light"): 3,
    ("dim", "light"): 4.5,
    ("brighten", "light"): 4.5,
    **{(a, d): 2.6 for d in NOT_LIGHT for a in ("turn_on", "turn_off")},
    **{(a, d): 3 for d in ("blinds", "curtains", "window", "garage_door") for a in ("open", "close")},
    ("lock", "door_lock"): 5,
    ("unlock", "door_lock"): 5,
    **{(a, d): 3 for d in ("coffee_maker", "dishwasher", "washing_machine", "robot_vacuum") for a in ("start", "stop")},
}

# --------------------------------------------------------------------------------------
# Rooms: the names that say each one. The room is the room named; no room name -> null
# ("in here", "in this room" -> null).
# --------------------------------------------------------------------------------------

ROOMS: dict[str, tuple[tuple[str, int], ...]] = {
    "kitchen": (("kitchen", 1),),
    "living_room": (("living room", 3), ("lounge", 2), ("front room", 1), ("sitting room", 1), ("family room", 1)),
    "bedroom": (("bedroom", 3), ("master bedroom", 1), ("main bedroom", 1)),
    "bathroom": (("bathroom", 3), ("washroom", 1)),
    "office": (("office", 2), ("study", 2), ("home office", 2)),
    "hallway": (("hallway", 3), ("hall", 2), ("corridor", 1), ("entryway", 1)),
    "garage": (("garage", 1),),
    "dining_room": (("dining room", 3), ("dining area", 1)),
    "kids_room": (("kids' room", 2), ("kids room", 1), ("nursery", 2), ("children's room", 1)),
    "basement": (("basement", 3), ("cellar", 1)),
}

# --------------------------------------------------------------------------------------
# Times. Rule: only a clock time counts; the value is 24-hour "HH:MM".
#   "7 pm", "7pm", "7 p.m.", "7 PM", "7:30 am"  -> 12-hour clock (12 am = 00, 12 pm = 12)
#   "21:15", "07:30" (always two-digit hours)    -> already 24-hour
#   "noon", "midday", "12 noon" -> 12:00; "midnight", "12 midnight" -> 00:00
#   "7 (o'clock) in the morning" -> 07:00; "in the afternoon" / "in the evening" / "at night"
#   -> +12 h; "half past" -> :30, "quarter past" -> :15; hours as digits or words one..twelve
#   Day words ("tomorrow", "tonight", "on weekdays", "every day", ...) do not change the value.
# --------------------------------------------------------------------------------------

NUMBER_WORDS = [
    "zero",
    "one",
    "two",
    "three",
    "four",
    "five",
    "six",
    "seven",
    "eight",
    "nine",
    "ten",
    "eleven",
    "twelve",
]
AMPM = [("am", "pm", 5), ("a.m.", "p.m.", 2), ("AM", "PM", 2)]
DAYPARTS = {  # phrase -> (hours allowed (12-hour), add to get 24-hour)
    "in the morning": (range(5, 12), 0),
    "in the afternoon": (range(1, 6), 12),
    "in the evening": (range(5, 12), 12),
    "at night": (range(8, 12), 12),
}


def pick(rng: random.Random, weighted):
    """One item of [(value, ..., weight)] by its last field."""
    return rng.choices(weighted, weights=[w[-1] for w in weighted])[0]


def render_time(rng: random.Random) -> tuple[str, str]:
    """A time phrase starting with its preposition, and its "HH:MM" value."""
    kind = rng.choices(["ampm", "ampm_min", "h24", "noon", "daypart", "past"], weights=[36, 20, 16, 8, 11, 9])[0]
    qualify = kind in ("ampm", "ampm_min", "h24", "noon")
    if kind in ("ampm", "ampm_min"):
        hour = rng.randint(1, 12)
        minute = 0 if kind == "ampm" else rng.choice([0, 5, 10, 15, 20, 25, 30, 35, 40, 45, 50, 55])
        pm = rng.random() < 0.5
        am_s, pm_s, _ = pick(rng, AMPM)
        gap = "" if (rng.random() < 0.3 and am_s == "am") else " "
        clock = str(hour) if kind == "ampm" else f"{hour}:{minute:02d}"
        text = f"at {clock}{gap}{pm_s if pm else am_s}"
        h24 = hour % 12 + (12 if pm else 0)
    elif kind == "h24":
        h24 = rng.choice([h for h in range(24) if not 10 <= h <= 12])  # "10:30" reads as either
        minute = rng.choice([0, 0, 5, 10, 15, 20, 30, 40, 45, 50, 55])
        text = f"at {h24:02d}:{minute:02d}"
    elif kind == "noon":
        text, h24 = rng.choice(
            [("at noon", 12), ("at midday", 12), ("at 12 noon", 12), ("at midnight", 0), ("at 12 midnight", 0)]
        )
        minute = 0
    else:
        part = rng.choice(sorted(DAYPARTS))
        hours, add = DAYPARTS[part]
        hour = rng.choice(list(hours))
        said = NUMBER_WORDS[hour] if rng.random() < 0.55 else str(hour)
        if kind == "daypart":
            minute = 0
            if rng.random() < 0.25:
                minute = rng.choice([15, 30, 45])
                clock = f"{hour}:{minute:02d}"
            else:
                clock = said + (" o'clock" if rng.random() < 0.5 else "")
        else:
            minute = rng.choice([15, 30])
            clock = ("half past " if minute == 30 else "quarter past ") + said
        text = f"at {clock} {part}"
        h24 = hour + add
    value = f"{h24:02d}:{minute:02d}"
    if qualify and rng.random() < 0.28:
        options = [
            "tomorrow",
            "today",
            "every day",
            "on weekdays",
            "on Saturday",
            "on Sunday",
            "on Monday",
            "on Friday",
        ]
        if 18 <= h24 <= 23:
            options += ["tonight", "this evening"]
        if 4 <= h24 <= 11:
            options += ["every morning", "this morning", "tomorrow morning"]
        word = rng.choice(options)
        text = f"{word} {text}" if rng.random() < 0.5 else f"{text} {word}"
    return text, value


# --------------------------------------------------------------------------------------
# Reasons and filler: no device, no room, no time and no action word in them.
# --------------------------------------------------------------------------------------

REASONS = [
    "I'm heading to bed",
    "we're about to leave",
    "I'm leaving for work",
    "guests will be here soon",
    "I've just arrived",
    "the baby is asleep",
    "it's getting late",
    "I'm working remotely today",
    "we have people coming over",
    "I'm cooking dinner",
    "my hands are full",
    "I forgot earlier",
    "we've returned",
    "I'm leaving now",
    "I'm about to take a nap",
    "it's movie night",
    "the kids are asleep",
    "I'm trying to save energy",
    "we're having dinner",
    "I need to focus",
    "it's been a long day",
    "I'm getting ready for work",
    "it's the weekend",
    "the dog is sleeping",
    "we're expecting guests",
    "I'm about to leave",
    "I'm reading",
    "my mum is visiting",
    "I'm in a meeting",
    "it's getting dark",
    "we're watching a film",
    "I'm in bed already",
    "the cat keeps staring at me",
    "I'm done for the day",
    "we're having a party",
]
# with a clock time only reasons that suit any hour
TIMED_REASONS = [
    "I'm trying to save energy",
    "we're expecting guests",
    "we have people coming over",
    "my mum is visiting",
    "I need to focus",
    "it's the weekend",
    "I forgot earlier",
    "I keep forgetting",
    "it saves me a job",
    "I'll be busy then",
    "I won't be around",
    "I'd rather not forget",
]
WAKE = ["Hey, ", "Hey home, ", "OK house, ", "Assistant, ", "Hi there, ", "Hello, ", "Computer, "]

# --------------------------------------------------------------------------------------
# Sentence frames. Slots:
#   {V} verb before its object ("turn off")     {V1} ... {V2}  split verb ("turn" X "off")
#   {G} gerund before object ("turning off")    {G1} ... {V2}  split gerund ("turning" X "off")
#   {P} participle ("turned off")               {S} state word ("off", "open", "running")
#   {I} verb with no object ("come on", "close")
#   {obj} device with determiner; when the row has a room and the frame has no {R}/{rn}/{rdet},
#         the room goes inside it ("the kitchen lights", "the lights in the kitchen")
#   {nobj} the same without a determiner ("kitchen lights"), for typed shorthand
#   {dev}/{ndev} device only: the frame says no room ("in here"), so the room is null
#   {R} "in the kitchen"   {rdet} "the kitchen"   {rn} "kitchen"
#   {T} time phrase ("at 7 pm", "tomorrow at 06:30")   {why} a reason
#   {it} it/them   {is} is/are   {needs} needs/need   {gets} gets/get
# A frame with {T} is used exactly for rows with a time; one with {R}/{rdet}/{rn} exactly for
# rows with a separately said room; one with {dev}/{ndev} only for rows without a room.
# --------------------------------------------------------------------------------------

FRAMES: list[str] = [
    # plain commands
    "{V} {obj}.",
    "{V1} {obj} {V2}.",
    "{V} {obj} please.",
    "Please {V} {obj}.",
    "{V1} {obj} {V2}, please.",
    "{V} {obj} for me.",
    "{V1} {obj} {V2} for me, thanks.",
    "{V} {obj} now.",
    "{V1} {obj} {V2} right now.",
    "Go ahead and {V} {obj}.",
    "Just {V} {obj}.",
    "{V} {obj}, thanks.",
    "{V} {obj} real quick.",
    "Quickly {V1} {obj} {V2}.",
    "Kindly {V} {obj}.",
    "{V} {obj} asap.",
    "Time to {V} {obj}.",
    "Let's {V} {obj}.",
    "Let's {V1} {obj} {V2}.",
    "OK, {V} {obj}.",
    "Right, {V1} {obj} {V2}.",
    "Alright, {V} {obj} please.",
    "Now {V} {obj}.",
    "{V} {obj} when you get a chance.",
    "{V1} {obj} {V2} whenever you can.",
    "{V} {obj} straight away.",
    "Please go and {V} {obj}.",
    "{V} {obj} for us please.",
    "Please, {V1} {obj} {V2}.",
    "Do me a favour and {V} {obj}.",
    "Do me a favor and {V1} {obj} {V2}.",
    "Be a dear and {V} {obj}.",
    "{V} {obj}, cheers.",
    "{V1} {obj} {V2}, ta.",
    "Okay so {V} {obj}.",
    "Um, {V} {obj} please.",
    "First thing, {V1} {obj} {V2}.",
    "Right away, {V} {obj}.",
    # questions
    "Can you {V} {obj}?",
    "Can you {V1} {obj} {V2}?",
    "Could you {V} {obj}?",
    "Could you please {V} {obj}?",
    "Could you {V1} {obj} {V2} please?",
    "Would you {V} {obj}?",
    "Would you please {V1} {obj} {V2}?",
    "Will you {V} {obj}?",
    "Can you please {V1} {obj} {V2} for me?",
    "Could you {V} {obj} for me?",
    "Would you mind {G} {obj}?",
    "Would you mind {G1} {obj} {V2}?",
    "Mind {G} {obj}?",
    "Is it possible to {V} {obj}?",
    "Any chance you could {V} {obj}?",
    "Any chance you could {V1} {obj} {V2}?",
    "How about {G} {obj}?",
    "What about {G1} {obj} {V2}?",
    "Why don't you {V} {obj}?",
    "Can you go ahead and {V} {obj}?",
    "Could I ask you to {V} {obj}?",
    "May I ask you to {V1} {obj} {V2}?",
    "Can we {V} {obj}?",
    "Shall we {V1} {obj} {V2}?",
    "Do you think you could {V} {obj}?",
    "Would it be possible to {V1} {obj} {V2}?",
    "Can I get you to {V} {obj}?",
    "Could you be so kind as to {V} {obj}?",
    "Hey, can you {V} {obj}?",
    "You there? {V} {obj} please.",
    "Can you {V} {obj} now?",
    "Could you quickly {V1} {obj} {V2}?",
    "Mind {G1} {obj} {V2} for me?",
    "Can you {V} {obj} for me please?",
    "Would you be able to {V} {obj}?",
    "Are you able to {V1} {obj} {V2}?",
    # wishes and indirect requests
    "I'd like {obj} {S}.",
    "I'd like {obj} {S}, please.",
    "I want {obj} {S}.",
    "I want {obj} {P}.",
    "I need {obj} {P}.",
    "I'd like {obj} {P}, please.",
    "I'd love {obj} {S}.",
    "Can I have {obj} {S}?",
    "Could I have {obj} {P}, please?",
    "Can I get {obj} {S}?",
    "Could we get {obj} {P}?",
    "Let's have {obj} {S}.",
    "Let's get {obj} {S}.",
    "Get {obj} {S}.",
    "Get {obj} {S} please.",
    "Please get {obj} {P}.",
    "Have {obj} {P}, please.",
    "{obj} {needs} to be {P}.",
    "{obj} should be {S}.",
    "{obj} should be {P} now.",
    "Make sure {obj} {is} {S}.",
    "Please make sure {obj} {is} {P}.",
    "Make sure {obj} {gets} {P}.",
    "See that {obj} {gets} {P}.",
    "I'd appreciate it if you could {V} {obj}.",
    "It'd be great if you could {V1} {obj} {V2}.",
    "It would be nice to have {obj} {S}.",
    "I'd prefer {obj} {S}.",
    "I'd rather have {obj} {S}.",
    "I need you to {V} {obj}.",
    "I need you to {V1} {obj} {V2}.",
    "I want you to {V} {obj}.",
    "I'd like you to {V1} {obj} {V2}.",
    "I would like you to {V} {obj}, please.",
    "I'd like to {V} {obj}.",
    "I want to {V1} {obj} {V2}.",
    "I'd love it if you could {V} {obj}.",
    "It's time for {obj} to {I}.",
    "Please have {obj} {I}.",
    "{obj} {is} to be {P}.",
    "We need {obj} {S}.",
    "We want {obj} {P}.",
    "Would love {obj} {S}.",
    "{obj} {S}, if you can.",
    "{obj} {S} would be nice.",
    "Mind getting {obj} {S}?",
    "Can you get {obj} {S}?",
    "Could you make {obj} {I}?",
    "I was hoping you could {V} {obj}.",
    "If you could {V1} {obj} {V2}, that'd be great.",
    "Let me have {obj} {S}, please.",
    # typed shorthand
    "{nobj} {S}",
    "{nobj} {S} pls",
    "{nobj} {S} please",
    "{nobj} {S}, thx",
    "{nobj} {S} now",
    "{nobj} {S} plz",
    "{V} {nobj}",
    "{V} {nobj} pls",
    "{V1} {nobj} {V2} pls",
    "yo {V} {obj}",
    "hey {V} {nobj}",
    "{nobj}: {S}",
    "{nobj} - {S} please",
    "{nobj}, {S}, now please",
    "{nobj} {S} asap",
    "{nobj} {S} thanks",
    "quick one: {nobj} {S}",
    "{V} {nobj} thx",
    "{V} {obj} k thx",
    "{nobj} {S} pls and ty",
    "{nobj} {S}?",
    "{nobj} {S} for me?",
    "could u {V} {nobj}",
    "can u get {nobj} {S}",
    "pls {V} {obj}",
    "plz {V1} {obj} {V2}",
    "{nobj} {S} ty",
    "need {nobj} {S}",
    "want {nobj} {S} pls",
    "{V1} {nobj} {V2} thanks",
    # room said as "here": room null
    "{ndev} {S} in here pls",
    "{ndev} {S} in here",
    "{V} {dev} in here.",
    "{V1} {dev} {V2} in here, please.",
    "Can you {V} {dev} in here?",
    "Could you {V1} {dev} {V2} in here?",
    "In here, {V} {dev}.",
    "I'd like {dev} in here {S}.",
    "{V} {dev} in this room.",
    "{V} {dev} where I am.",
    "Can you {V} {dev} in this room?",
    "{ndev} {S} in here, thanks",
    "{ndev} in here {S} please",
    "{V} {dev} in here {T}.",
    "{T}, {V1} {dev} {V2} in here.",
    "I want {dev} in here {P} {T}.",
    "{ndev} in here {S} {T} pls",
    # reasons and filler
    "{why}, {V} {obj}.",
    "{why}. {V1} {obj} {V2}, please.",
    "{why}, so {V} {obj}.",
    "{why}, could you {V} {obj}?",
    "{why} - {V} {obj} please.",
    "{V} {obj}, {why}.",
    "{V1} {obj} {V2}, {why}.",
    "Can you {V} {obj}? {why}.",
    "{why}; please {V} {obj}.",
    "{why}, can I get {obj} {S}?",
    "{why}, I'd like {obj} {S}.",
    "{why}, so {obj} {needs} to be {P}.",
    "{V} {obj} because {why}.",
    "Since {why}, {V} {obj}.",
    "{why} so {V1} {obj} {V2}",
    "{why}, mind {G} {obj}?",
    "As {why}, please {V} {obj}.",
    "{why} - {nobj} {S} please",
    "{why}, so {nobj} {S} pls",
    "{why}. {obj} should be {P}.",
    # room said on its own
    "{R}, {V} {obj}.",
    "{R}, {V1} {obj} {V2} please.",
    "{V} {obj} {R}.",
    "{V1} {obj} {V2} {R}.",
    "{V} {obj} {R}, please.",
    "Can you {V} {obj} {R}?",
    "Could you {V1} {obj} {V2} {R}?",
    "{rn}: {nobj} {S}",
    "{rn}: {nobj} {S} please",
    "{rn} - {V} {obj}",
    "{nobj} {S} {R}",
    "{nobj} {S} {R} pls",
    "I'd like {obj} {S} {R}.",
    "I want {obj} {R} {P}.",
    "{R}, I'd like {obj} {S}.",
    "{R}, could you {V} {obj}?",
    "{R} please {V} {obj}",
    "{why}, {V} {obj} {R}.",
    "{R}, {obj} {needs} to be {P}.",
    "Can I get {obj} {S} {R}?",
    "Would you mind {G} {obj} {R}?",
    "{V1} {obj} {V2} {R} for me.",
    "For {rdet}, {V} {obj}.",
    "Over in {rdet}, {V} {obj}.",
    "In {rdet} {V} {obj}",
    "{V} {obj} over in {rdet}.",
    "Regarding {rdet}: {V1} {obj} {V2}.",
    "Back in {rdet}, {V} {obj} please.",
    "{obj} {R} {S} please",
    "Could you {V} {obj} {R} for me?",
    "{R}: {V1} {obj} {V2}.",
    # with a time, time first
    "{T}, {V} {obj}.",
    "{T}, please {V1} {obj} {V2}.",
    "{T} {V} {obj}",
    "{T}, could you {V} {obj}?",
    "{T}, I'd like {obj} {S}.",
    "{T}, {obj} should be {P}.",
    "{T}, {nobj} {S} please.",
    "{T} please {V} {obj}.",
    "{T}, can you {V1} {obj} {V2}?",
    "{T}, I want {obj} {P}.",
    "{T}, go ahead and {V} {obj}.",
    "{T}, make sure {obj} {is} {S}.",
    "{T} I need {obj} {P}",
    "{T}: {V} {obj}.",
    "{T}, set {obj} to {I}.",
    "{T}, have {obj} {I}.",
    "{T}, {V1} {obj} {V2} for me.",
    "{T}, would you {V} {obj}?",
    "{T} - {nobj} {S}",
    "{T}, get {obj} {S}.",
    # with a time, time last
    "{V} {obj} {T}.",
    "{V1} {obj} {V2} {T}.",
    "{V} {obj} {T}, please.",
    "Please {V} {obj} {T}.",
    "Can you {V} {obj} {T}?",
    "Could you {V1} {obj} {V2} {T}?",
    "Would you {V} {obj} {T}?",
    "I'd like {obj} {S} {T}.",
    "I want {obj} {P} {T}.",
    "I need {obj} {P} {T}.",
    "{obj} should be {P} {T}.",
    "{obj} {needs} to be {S} {T}.",
    "Make sure {obj} {is} {S} {T}.",
    "Have {obj} {P} {T}.",
    "Get {obj} {S} {T}.",
    "{nobj} {S} {T}",
    "{nobj} {S} {T} pls",
    "{nobj} {S} {T} thx",
    "{V} {nobj} {T}",
    "Set {obj} to {I} {T}.",
    "Schedule {obj} to {I} {T}.",
    "Program {obj} to {I} {T}.",
    "Can you set {obj} to {I} {T}?",
    "I want {obj} to {I} {T}.",
    "I'd like {obj} to {I} {T}.",
    "Have {obj} {I} {T}.",
    "Make {obj} {I} {T}.",
    "Please schedule {obj} to {I} {T}.",
    "{obj} should {I} {T}.",
    "{obj} {needs} to {I} {T}.",
    "Tell {obj} to {I} {T}.",
    "Add a schedule: {V} {obj} {T}.",
    "Create a schedule to {V1} {obj} {V2} {T}.",
    "Please {V1} {obj} {V2} {T}, thanks.",
    "Don't forget to {V} {obj} {T}.",
    "Remember to {V1} {obj} {V2} {T}.",
    "Remember to {V} {obj} {T}, please.",
    "Would you mind {G} {obj} {T}?",
    "How about {G1} {obj} {V2} {T}?",
    "Could I have {obj} {S} {T}?",
    "Can I get {obj} {P} {T}?",
    "Is it possible to {V} {obj} {T}?",
    "Any chance you could {V} {obj} {T}?",
    "I'd appreciate it if you could {V} {obj} {T}.",
    "{why}, so {V} {obj} {T}.",
    "{why}. {V1} {obj} {V2} {T}, please.",
    "{V} {obj} {T}, {why}.",
    "{why}, could you {V} {obj} {T}?",
    "{why} - {nobj} {S} {T} please",
    "Let's {V} {obj} {T}.",
    "Go ahead and {V1} {obj} {V2} {T}.",
    "I'd like you to {V} {obj} {T}.",
    "Need {nobj} {S} {T}",
    "pls {V} {obj} {T}",
    "can u {V1} {obj} {V2} {T}",
    "{obj} {S} {T}, if you can.",
    "We want {obj} {S} {T}.",
    "Let's have {obj} {S} {T}.",
    "Set a schedule to {V} {obj} {T}.",
    "Could you make sure {obj} {gets} {P} {T}?",
    "I'd love {obj} {S} {T}.",
    "Just {V} {obj} {T}.",
    # with a time in the middle
    "Please, {T}, {V} {obj}.",
    "Could you, {T}, {V1} {obj} {V2}?",
    "{obj}: {S} {T}",
    "{obj} - {V1} {it} {V2} {T}.",
    "I'd like, {T}, {obj} {S}.",
    "Then {T} {V} {obj}.",
    # the device first, then a pronoun
    "{obj} - {V1} {it} {V2} please.",
    "{obj}, {V1} {it} {V2}.",
    "{obj}: can you {V1} {it} {V2}?",
    "About {obj}, could you {V1} {it} {V2}?",
    "You know {obj}? {V1} {it} {V2} please.",
    "{obj}? {V1} {it} {V2}.",
    "{obj}, please {V1} {it} {V2} {T}.",
    "Oh and {obj}, {V1} {it} {V2}.",
    "As for {obj}, {V1} {it} {V2} {T}.",
    "Regarding {obj}: {V1} {it} {V2}, please.",
    "{obj}, {V1} {it} {V2} {T}.",
    "{obj} - can you {V1} {it} {V2} for me?",
    "{R}, {obj}: {V1} {it} {V2}.",
    # room and time both said on their own
    "{V} {obj} {R} {T}.",
    "{V1} {obj} {V2} {R} {T}.",
    "{R}, {V} {obj} {T}.",
    "{T}, {V} {obj} {R}.",
    "{R}, {T}, {V1} {obj} {V2}.",
    "{T}, {R}, I'd like {obj} {S}.",
    "I'd like {obj} {S} {R} {T}.",
    "Can you {V} {obj} {R} {T}?",
    "{nobj} {S} {R} {T}",
    "{rn}: {nobj} {S} {T}",
    "Set {obj} {R} to {I} {T}.",
    "{R}, set {obj} to {I} {T}.",
    "Could you {V1} {obj} {V2} {R} {T}?",
    "{T}, please {V1} {obj} {V2} {R}.",
    "{R} I need {obj} {P} {T}",
    "Schedule {obj} {R} to {I} {T}.",
    "For {rdet}, {V} {obj} {T}.",
    "{T}, over in {rdet}, {V} {obj}.",
    "{rn} - {V} {obj} {T}",
    "{R}, have {obj} {P} {T}.",
    "Please {V} {obj} {R} {T}.",
    "{T} {V} {obj} {R}",
]

FORMS = ("V", "V1", "G", "G1", "P", "S", "I")


@dataclass(frozen=True)
class Frame:
    index: int
    text: str
    time: bool  # has {T}
    room: str  # "needs" (room said on its own), "never" (device only), "either"
    forms: frozenset[str]


def parse_frames() -> list[Frame]:
    frames = []
    assert len(set(FRAMES)) == len(FRAMES), "duplicate frame"
    for index, text in enumerate(FRAMES):
        slots = set(re.findall(r"\{(\w+)\}", text))
        if slots & {"R", "rdet", "rn"}:
            room = "needs"
        elif slots & {"dev", "ndev"}:
            room = "never"
        else:
            room = "either"
        frames.append(Frame(index, text, "T" in slots, room, frozenset(slots & set(FORMS))))
    return frames


# --------------------------------------------------------------------------------------
# Building one row.
# --------------------------------------------------------------------------------------


def verbs_for(action: str, device: str, forms: frozenset[str]) -> list[Verb]:
    out = []
    for verb in VERBS[action]:
        if verb.devices is not None and device not in verb.devices:
            continue
        if forms & {"V", "G"} and not (verb.contig and verb.trans):
            continue
        if forms & {"V1", "G1"} and not verb.trans:
            continue
        if "P" in forms and (verb.part is None or not verb.trans):
            continue
        if "I" in forms and not verb.intr:
            continue
        out.append(verb)
    return out


def states_for(action: str, device: str) -> list[str]:
    return [word for word, devices in STATES[action] if devices is None or device in devices]


def lower_first(text: str) -> str:
    if not text or re.match(r"I\b", text) or any(c.isupper() for c in text.split()[0][1:]):
        return text
    return text[0].lower() + text[1:]


def upper_first(text: str) -> str:
    return text[:1].upper() + text[1:]


def tidy(text: str) -> str:
    text = re.sub(r"\s+", " ", text).strip()
    text = re.sub(r" ([,.?!:;])", r"\1", text)
    return text.replace("..", ".")


def strip_end(text: str) -> str:
    """Drop final punctuation, but not the dot of a final "a.m."/"p.m."."""
    stripped = text.rstrip(".!?")
    return stripped + "." if re.search(r"[ap]\.m$", stripped) else stripped


def style(rng: random.Random, text: str) -> str:
    """Casing, punctuation and typed shorthand: the same request as people type or say it."""
    if rng.random() < 0.07 and not re.match(r"(hey|yo|hi)\b", text, re.I):
        text = rng.choice(WAKE) + lower_first(text)
    roll = rng.random()
    if roll < 0.58:  # as written, capitalised
        text = upper_first(text)
        if text.endswith(".") and not text.endswith(".m.") and rng.random() < 0.15:
            text = text[:-1] + "!"
    elif roll < 0.78:  # typed: all lower case, no final punctuation, shorthand
        text = strip_end(text.lower())
        if rng.random() < 0.4:
            text = text.replace(",", "")
        if rng.random() < 0.5:
            text = re.sub(r"\bplease\b", rng.choice(["pls", "plz", "please", "plse"]), text)
        if rng.random() < 0.5:
            text = re.sub(r"\byou\b", "u", text)
        if rng.random() < 0.5:
            text = re.sub(r"\bthanks\b", rng.choice(["thx", "thnx", "ty"]), text)
    elif roll < 0.88:  # lower-case start, punctuation kept
        text = lower_first(text)
    else:  # capitalised, no final punctuation
        text = strip_end(upper_first(text))
    return tidy(text)


def device_phrase(rng: random.Random, noun: str, room_name: str | None, bare: bool) -> str:
    det = "" if bare else pick(rng, [("the", 8), ("my", 1), ("our", 1)])[0]
    if room_name is None:
        return f"{det} {noun}".strip()
    if bare or rng.random() < 0.55:
        return f"{det} {room_name} {noun}".strip()
    room_det = pick(rng, [("the", 8), ("my", 1), ("our", 1)])[0]
    return f"{det} {noun} in {room_det} {room_name}".strip()


def make_row(rng: random.Random, frames: list[Frame], used: Counter) -> tuple[str, dict, int] | None:
    action, device = rng.choices(list(PAIR_WEIGHTS), weights=list(PAIR_WEIGHTS.values()))[0]
    dev = DEVICES[device]
    room = rng.choice(dev.rooms) if dev.rooms and rng.random() < dev.room_share else None
    has_time = rng.random() < TIME_SHARE

    def fits(frame: Frame) -> bool:
        if frame.time != has_time:
            return False
        if (frame.room == "needs" and room is None) or (frame.room == "never" and room is not None):
            return False
        if frame.room == "never" and device in ("garage_door", "door_lock"):  # "front door in here"
            return False
        if "S" in frame.forms and not states_for(action, device):
            return False
        return not (frame.forms - {"S"}) or bool(verbs_for(action, device, frame.forms - {"S"}))

    candidates = [f for f in frames if fits(f)]
    # two random candidates, keep the less used: spreads rows evenly over the frames
    a, b = rng.choice(candidates), rng.choice(candidates)
    frame = a if used[a.index] <= used[b.index] else b

    nouns = dev.nouns if room is not None or not dev.placed_nouns else dev.nouns + dev.placed_nouns
    noun, plural, _ = pick(rng, nouns)
    room_name = pick(rng, ROOMS[room])[0] if room is not None else None
    inside = room_name if frame.room == "either" else None
    verb_forms = frame.forms - {"S"}
    verb = rng.choice(verbs_for(action, device, verb_forms)) if verb_forms else None
    time_text, time_value = render_time(rng) if has_time else ("", None)
    room_det = pick(rng, [("the", 8), ("my", 1), ("our", 1)])[0]
    fill = {
        "V": f"{verb.head} {verb.particle}".strip() if verb else "",
        "V1": verb.head if verb else "",
        "V2": verb.particle if verb else "",
        "G": f"{GERUND[verb.head]} {verb.particle}".strip() if verb else "",
        "G1": GERUND[verb.head] if verb else "",
        "P": (verb.part or "") if verb else "",
        "I": f"{verb.head} {verb.particle}".strip() if verb else "",
        "S": rng.choice(states_for(action, device)),
        "obj": device_phrase(rng, noun, inside, bare=False),
        "nobj": device_phrase(rng, noun, inside, bare=True),
        "dev": device_phrase(rng, noun, None, bare=False),
        "ndev": noun,
        "R": f"in {room_det} {room_name}" if room_name else "",
        "rdet": f"{room_det} {room_name}" if room_name else "",
        "rn": room_name or "",
        "T": time_text,
        "why": rng.choice(TIMED_REASONS if has_time else REASONS),
        "it": "them" if plural else "it",
        "is": "are" if plural else "is",
        "needs": "need" if plural else "needs",
        "gets": "get" if plural else "gets",
    }
    text = style(rng, frame.text.format_map(fill))
    if not 3 <= len(text.split()) <= 25:
        return None
    command = {"action": action, "device": device, "room": room, "time": time_value}
    return text, command, frame.index


def normalise(text: str) -> str:
    """The duplicate key: case folded, whitespace collapsed, trailing punctuation stripped."""
    return re.sub(r"\s+", " ", text).strip().casefold().rstrip(".!?,;: ").strip()


def generate() -> list[tuple[str, dict, int]]:
    rng = random.Random(SEED)
    frames = parse_frames()
    used: Counter = Counter()
    seen: set[str] = set()
    rows = []
    while len(rows) < TARGET_ROWS:
        row = make_row(rng, frames, used)
        if row is None or normalise(row[0]) in seen:
            continue
        seen.add(normalise(row[0]))
        used[row[2]] += 1
        rows.append(row)
    rng.shuffle(rows)
    return rows


def serialise(rows: list[tuple[str, dict, int]]) -> bytes:
    lines = [
        json.dumps({"request": text, "command": json.dumps(cmd, ensure_ascii=False)}, ensure_ascii=False)
        for text, cmd, _ in rows
    ]
    return ("\n".join(lines) + "\n").encode("utf-8")


def write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; give it an ordinary file's mode
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


# --------------------------------------------------------------------------------------
# --check: verify the file on disk against the schema and the rules.
# --------------------------------------------------------------------------------------

ALLOWED_TIME = re.compile(r"^\d\d:\d\d$")


def _alternation(words) -> re.Pattern:
    words = sorted(set(words), key=lambda w: (-len(w), w))
    return re.compile(r"(?<![\w'])(" + "|".join(re.escape(w) for w in words) + r")(?![\w'])")


def read_time(text: str) -> str | None:
    """An independent reading of the clock time in a request, by the card's rules."""
    t = text.lower()
    words = {w: i for i, w in enumerate(NUMBER_WORDS)}
    hour_re = r"(\d{1,2}|" + "|".join(NUMBER_WORDS[1:]) + r")"
    found = []
    for m in re.finditer(r"\bat (\d{1,2})(?::(\d\d))? ?(am|pm|a\.m\.|p\.m\.)", t):
        h, mi, ap = int(m.group(1)), int(m.group(2) or 0), m.group(3)
        found.append(f"{h % 12 + (12 if ap.startswith('p') else 0):02d}:{mi:02d}")
    for m in re.finditer(r"\bat (\d\d):(\d\d)(?! ?(?:am|pm|a\.m\.|p\.m\.|in the|at night))", t):
        found.append(f"{m.group(1)}:{m.group(2)}")
    for m in re.finditer(r"\bat (?:12 )?(noon|midday|midnight)\b", t):
        found.append("00:00" if m.group(1) == "midnight" else "12:00")
    part_re = r"(in the morning|in the afternoon|in the evening|at night)"
    for m in re.finditer(r"\bat (half past |quarter past )?" + hour_re + r"(?::(\d\d))?(?: o'clock)? " + part_re, t):
        past, h, mi, part = m.group(1), m.group(2), m.group(3), m.group(4)
        h = int(h) if h.isdigit() else words[h]
        minute = 30 if past == "half past " else 15 if past == "quarter past " else int(mi or 0)
        found.append(f"{h + DAYPARTS[part][1]:02d}:{minute:02d}")
    if len(found) > 1:
        return "AMBIGUOUS"
    return found[0] if found else None


def check(path: Path) -> int:
    problems: list[str] = []
    data = path.read_bytes()
    rows = generate()
    if serialise(rows) != data:
        problems.append(f"{path} differs from what the script generates now: rerun it")
    lines = data.decode("utf-8").splitlines()
    if len(lines) < 2400:
        problems.append(f"only {len(lines)} rows")
    room_words = {name: room for room, names in ROOMS.items() for name, _ in names}
    room_re = _alternation(room_words)
    noun_words = {}
    for d in DEVICES.values():
        for noun, _, _ in d.nouns + d.placed_nouns:
            noun_words[noun.lower()] = d.name
    noun_re = _alternation(noun_words)
    seen: dict[str, int] = {}
    counts = {key: Counter() for key in KEYS}
    pair_counts: Counter = Counter()
    for number, line in enumerate(lines, 1):
        row = json.loads(line)
        if list(row) != ["request", "command"] or not all(isinstance(v, str) for v in row.values()):
            problems.append(f"line {number}: bad row keys {list(row)}")
            continue
        text, command = row["request"], json.loads(row["command"])
        if list(command) != list(KEYS):
            problems.append(f"line {number}: command keys {list(command)}")
            continue
        if json.dumps(command, ensure_ascii=False) != row["command"]:
            problems.append(f"line {number}: command is not in the canonical serialisation")
        action, device, room, time = (command[k] for k in KEYS)
        key = normalise(text)
        if key in seen:
            problems.append(f"line {number}: duplicate of line {seen[key]}")
        seen[key] = number
        if not 3 <= len(text.split()) <= 25:
            problems.append(f"line {number}: {len(text.split())} words")
        if device not in DEVICES or action not in DEVICES[device].actions:
            problems.append(f"line {number}: {action}/{device} not allowed")
            continue
        if room is not None and room not in DEVICES[device].rooms:
            problems.append(f"line {number}: room {room} not allowed for {device}")
        if time is not None and not (ALLOWED_TIME.match(time) and int(time[:2]) < 24 and int(time[3:]) < 60):
            problems.append(f"line {number}: time {time!r}")
        # the values follow from the words: re-read room, device and time from the text alone
        low = text.lower().replace("garage door", "GD")
        said_rooms = {room_words[m] for m in room_re.findall(low)}
        if said_rooms != ({room} if room else set()):
            problems.append(f"line {number}: room words {said_rooms} but room {room}: {text}")
        said_devices = {noun_words[m] for m in noun_re.findall(text.lower())}
        if said_devices != {device}:
            problems.append(f"line {number}: device words {said_devices} but device {device}: {text}")
        if read_time(text) != time:
            problems.append(f"line {number}: reads time {read_time(text)} but time {time}: {text}")
        for k in KEYS:
            counts[k][command[k] if k != "time" else ("present" if time else "null")] += 1
        pair_counts[(action, device)] += 1
    # vocabulary hygiene: reasons carry no device, room, time or action word
    action_words = {v.head for vs in VERBS.values() for v in vs} | {v.particle for vs in VERBS.values() for v in vs}
    action_words |= {w for ws in STATES.values() for w, _ in ws}
    action_words -= {"", "in"}  # "kick in" aside, "in" is everywhere
    for reason in REASONS + TIMED_REASONS:
        tokens = set(re.findall(r"[a-z']+", reason.lower()))
        if room_re.search(reason.lower()) or noun_re.search(reason.lower()) or tokens & action_words:
            problems.append(f"reason mentions a device, room or action word: {reason!r}")
    frame_use = Counter(index for _, _, index in rows)
    top_index, top = frame_use.most_common(1)[0]
    print(f"rows: {len(lines)}")
    print(
        f"frames: {len(FRAMES)} written, {len(frame_use)} used; most used: {top} rows "
        f"({100 * top / len(rows):.1f}%) {FRAMES[top_index]!r}; least used: {min(frame_use.values())} rows"
    )
    for k in KEYS:
        print(f"{k}: " + ", ".join(f"{v} {n}" for v, n in sorted(counts[k].items(), key=lambda x: -x[1])))
    print("action/device: " + ", ".join(f"{a}/{d} {n}" for (a, d), n in sorted(pair_counts.items())))
    if len(frame_use) < 250:
        problems.append(f"only {len(frame_use)} frames used")
    if top > 0.02 * len(rows):
        problems.append(f"frame {FRAMES[top_index]!r} covers {top} rows")
    for problem in problems[:40]:
        print("PROBLEM:", problem)
    print("OK" if not problems else f"{len(problems)} problems")
    return 1 if problems else 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--check", action="store_true", help="verify the written file instead of writing it")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    if args.check:
        return check(args.out)
    rows = generate()
    write(args.out, serialise(rows))
    print(f"wrote {len(rows)} rows to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
