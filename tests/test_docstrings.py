"""The `Example:` block of every public class runs offline, as written (doctest), and every public class
has one. Public: the classes in `rubert_tf.__all__` and `rubert_tf.layers.__all__`."""

import doctest
import inspect

import pytest

import rubert_tf
import rubert_tf.layers

FLAGS = doctest.NORMALIZE_WHITESPACE | doctest.ELLIPSIS


def public_classes():
    classes = {}
    for package in (rubert_tf, rubert_tf.layers):
        for name in package.__all__:
            value = getattr(package, name)
            if inspect.isclass(value):
                classes[f"{package.__name__}.{name}"] = value
    return classes


PUBLIC = public_classes()


def test_the_public_classes_are_the_ones_documented():
    # A guard on the list itself: the package's main classes must be among those checked.
    assert {"rubert_tf.RuBertConfig", "rubert_tf.RuBertTokenizer", "rubert_tf.RuBertEncoder",
            "rubert_tf.RuBertSeq2Seq", "rubert_tf.layers.MultiHeadAttention"} <= set(PUBLIC)


@pytest.mark.parametrize("name", sorted(PUBLIC))
def test_class_docstring_example_runs(name):
    cls = PUBLIC[name]
    # Only the class docstring (recurse=False), with empty globals: an example imports what it uses,
    # so it can be copied as it is.
    tests = doctest.DocTestFinder(recurse=False).find(cls, name, module=False, globs={})
    examples = [example for test in tests for example in test.examples]
    assert examples and "Example" in (cls.__doc__ or ""), f"{name}: the class docstring has no `Example:` block"
    runner = doctest.DocTestRunner(optionflags=FLAGS)
    report = []
    for test in tests:
        runner.run(test, out=report.append)
    results = runner.summarize(verbose=False)
    assert results.failed == 0, f"{name}: {results.failed} of {results.attempted} examples failed\n" + "".join(report)
