"""Tests for vocabulary.py and the committed labels.tsv.

Run from the repository root with
``python3 -m unittest discover -s worker/model`` (or ``python3 -m unittest``
inside worker/model).  Tests that need WordNet 3.0 fail, never skip, when
/usr/share/wordnet/data.noun is missing: ``apt-get install wordnet-base``.
"""

import contextlib
import io
import os
import sys
import tempfile
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import vocabulary  # noqa: E402  (needs the sys.path entry above)

LABELS = os.path.join(HERE, "labels.tsv")
WNIDS = os.path.join(HERE, "imagenet-wnids.txt")
WORDNET = vocabulary.DEFAULT_WORDNET
DOG_OFFSET = "02084071"  # dog.n.01
FIRST_DOG, LAST_DOG = "n02085620", "n02113978"  # Chihuahua .. Mexican hairless

_SYNSETS = []


def read_table():
    """Return (header, rows) of labels.tsv; rows are lists of 5 fields."""
    with open(LABELS, encoding="utf-8") as handle:
        lines = handle.read().splitlines()
    return lines[0], [line.split("\t") for line in lines[1:]]


def rows_by_wnid():
    """Return {wnid: row} for labels.tsv."""
    return {row[1]: row for row in read_table()[1]}


def run_main(argv):
    """Run vocabulary.main(argv); return (exit code, stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = vocabulary.main(argv)
    return code, out.getvalue(), err.getvalue()


class WordNetTestCase(unittest.TestCase):
    """Base class whose tests need WordNet 3.0 and fail without it."""

    def synsets(self):
        """Return the parsed WordNet nouns or fail with the install hint."""
        if not os.path.isfile(WORDNET):
            self.fail(f"WordNet 3.0 is missing ({WORDNET}): run "
                      f"`apt-get install wordnet-base`")
        if not _SYNSETS:
            _SYNSETS.append(vocabulary.load_wordnet(WORDNET))
        return _SYNSETS[0]


class TableShapeTest(unittest.TestCase):
    """The committed table's layout."""

    def test_table_has_a_header_and_1000_rows_in_wnid_sorted_order(self):
        header, rows = read_table()
        self.assertEqual(header, "index\twnid\tname\tparents\tcategories")
        self.assertEqual(len(rows), 1000)
        self.assertTrue(all(len(row) == 5 for row in rows))
        self.assertEqual([row[0] for row in rows],
                         [str(i) for i in range(1000)])
        wnids = [row[1] for row in rows]
        self.assertEqual(wnids, sorted(wnids))
        self.assertEqual(len(set(wnids)), 1000)
        self.assertEqual((wnids[0], wnids[-1]), ("n01440764", "n15075141"))

    def test_table_rows_follow_the_committed_wnid_list(self):
        wnids = vocabulary.load_wnids(WNIDS)
        self.assertEqual([row[1] for row in read_table()[1]], wnids)

    def test_names_are_unique_and_never_equal_a_parent_name(self):
        rows = read_table()[1]
        names = [row[2].casefold() for row in rows]
        self.assertEqual(len(set(names)), 1000)
        parents = {p.casefold() for row in rows for p in row[3].split("|")}
        self.assertEqual(set(names) & parents, set())

    def test_at_least_90_percent_of_classes_have_a_parent(self):
        rows = read_table()[1]
        self.assertGreaterEqual(sum(1 for row in rows if row[3]), 900)

    def test_each_row_has_a_category_exactly_when_it_has_parents(self):
        known = set(vocabulary.CATEGORY_OF.values())
        for row in read_table()[1]:
            self.assertEqual(bool(row[3]), bool(row[4]), row)
            if row[4]:
                self.assertIn(row[4], known)

    def test_parents_are_allow_listed_names_without_duplicates(self):
        allowed = set(vocabulary.CATEGORY_OF)
        for row in read_table()[1]:
            parents = row[3].split("|") if row[3] else []
            self.assertEqual(len(parents), len(set(parents)), row)
            self.assertLessEqual(set(parents), allowed, row)


class TableContentTest(unittest.TestCase):
    """Rekognition-style parents for well-known classes."""

    def test_golden_retriever_starts_with_dog_and_includes_mammal_and_animal(
            self):
        row = rows_by_wnid()["n02099601"]
        self.assertEqual(row[2], "Golden Retriever")
        parents = row[3].split("|")
        self.assertEqual(parents[0], "Dog")
        self.assertIn("Mammal", parents)
        self.assertIn("Animal", parents)
        self.assertEqual(row[4], "Animals and Pets")

    def test_tabby_has_cat(self):
        self.assertIn("Cat", rows_by_wnid()["n02123045"][3].split("|"))

    def test_car_classes_have_car_and_vehicle(self):
        table = rows_by_wnid()
        for wnid in ("n02814533", "n04285008"):  # beach wagon, sports car
            parents = table[wnid][3].split("|")
            self.assertIn("Car", parents, wnid)
            self.assertIn("Vehicle", parents, wnid)
            self.assertNotIn("Container", parents, wnid)
            self.assertEqual(table[wnid][4], "Vehicles and Automotive")

    def test_duplicate_first_lemmas_are_disambiguated(self):
        table = rows_by_wnid()
        self.assertEqual(table["n02012849"][2], "Crane (Wading Bird)")
        self.assertEqual(table["n03126707"][2], "Crane (Lifting Device)")
        self.assertNotEqual(table["n03710637"][2], table["n03710721"][2])


class WordNetDerivedTest(WordNetTestCase):
    """Checks that need WordNet 3.0 data.noun."""

    def test_every_dog_breed_has_dog(self):
        synsets = self.synsets()
        table = rows_by_wnid()
        memo = {}
        breeds = [w for w in table if FIRST_DOG <= w <= LAST_DOG
                  and DOG_OFFSET in vocabulary.ancestor_distances(
                      synsets, w[1:], memo)]
        self.assertEqual(len(breeds), 118)
        for wnid in breeds:
            self.assertIn("Dog", table[wnid][3].split("|"), wnid)

    def test_only_dog_breeds_have_dog(self):
        synsets = self.synsets()
        memo = {}
        for wnid, row in rows_by_wnid().items():
            is_dog = DOG_OFFSET in vocabulary.ancestor_distances(
                synsets, wnid[1:], memo)
            self.assertEqual(is_dog, "Dog" in row[3].split("|"), wnid)

    def test_every_allow_listed_synset_exists_in_wordnet(self):
        synsets = self.synsets()
        for offset in vocabulary.ALLOW_LIST:
            self.assertIn(offset, synsets)
        for offset, extra in vocabulary.EXTRA_HYPERNYMS.items():
            self.assertLessEqual({offset, *extra}, set(synsets))

    def test_check_mode_passes_on_the_committed_table(self):
        self.synsets()
        code, out, err = run_main(["--check", "--wordnet", WORDNET,
                                   "--out", LABELS])
        self.assertEqual(code, 0, err)
        self.assertIn("up to date", out)

    def test_check_mode_fails_naming_the_first_differing_row(self):
        self.synsets()
        with open(LABELS, encoding="utf-8") as handle:
            lines = handle.read().splitlines(keepends=True)
        lines[208] = lines[208].replace("Golden Retriever", "Golden Dog")
        with tempfile.TemporaryDirectory() as tmp:
            stale = os.path.join(tmp, "labels.tsv")
            with open(stale, "w", encoding="utf-8") as handle:
                handle.writelines(lines)
            code, _, err = run_main(["--check", "--wordnet", WORDNET,
                                     "--out", stale])
        self.assertEqual(code, 1)
        self.assertIn("labels.tsv:209 differs", err)
        self.assertIn("Golden Retriever", err)


class RulesTest(unittest.TestCase):
    """Unit checks of the naming and input rules (no WordNet needed)."""

    def test_each_parent_name_has_exactly_one_category(self):
        categories = {}
        for name, category in vocabulary.ALLOW_LIST.values():
            self.assertEqual(categories.setdefault(name, category), category,
                             name)

    def test_display_name_title_cases_words_and_keeps_joiners_and_acronyms(
            self):
        self.assertEqual(vocabulary.display_name("golden_retriever"),
                         "Golden Retriever")
        self.assertEqual(vocabulary.display_name("CD_player"), "CD Player")
        self.assertEqual(vocabulary.display_name("iPod"), "iPod")
        self.assertEqual(vocabulary.display_name("bouvier_des_flandres"),
                         "Bouvier des Flandres")
        self.assertEqual(vocabulary.display_name("hen-of-the-woods"),
                         "Hen-of-the-woods")

    def test_missing_wordnet_fails_with_the_install_hint(self):
        with tempfile.TemporaryDirectory() as tmp:
            missing = os.path.join(tmp, "data.noun")
            code, _, err = run_main(["--check", "--wordnet", missing])
        self.assertEqual(code, 2)
        self.assertIn("apt-get install wordnet-base", err)

    def test_a_wnid_list_that_is_not_sorted_is_rejected(self):
        wnids = vocabulary.load_wnids(WNIDS)
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "wnids.txt")
            with open(path, "w", encoding="utf-8") as handle:
                handle.write("\n".join(reversed(wnids)) + "\n")
            with self.assertRaisesRegex(vocabulary.VocabularyError,
                                        "not sorted"):
                vocabulary.load_wnids(path)


if __name__ == "__main__":
    unittest.main()
