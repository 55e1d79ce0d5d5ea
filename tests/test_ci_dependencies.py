"""tests/ci_dependencies.py: under CI=true a missing Keras/Chromium/Playwright fails the tests instead of skipping them."""
import pytest

pytest_plugins = ["pytester"]
INNER = '''
import pytest

def test_needs_a_browser():
    pytest.skip("browser tests need Chromium on PATH (apt-get install chromium)")

def test_needs_a_dataset():
    pytest.skip("datasets not found at ../shared/data")
'''
MODULE_SKIP = 'import pytest\nkeras = pytest.importorskip("keras_that_is_not_installed")\n\ndef test_x():\n    pass\n'


@pytest.mark.parametrize("ci, browser_outcome", [("true", "failed"), ("", "skipped")])
def test_a_missing_dependency_fails_only_in_ci(pytester, monkeypatch, ci, browser_outcome):
    monkeypatch.setenv("CI", ci)
    pytester.makeconftest("from ci_dependencies import pytest_make_collect_report, pytest_runtest_makereport\n")
    pytester.makepyfile(test_inner=INNER, test_module_skip=MODULE_SKIP)
    result = pytester.runpytest_inprocess("-p", "no:cacheprovider", "--continue-on-collection-errors")
    outcomes = result.parseoutcomes()
    if browser_outcome == "failed":     # the browser test and the module that needs keras fail; the dataset skips
        assert outcomes.get("failed") == 1 and outcomes.get("errors", outcomes.get("error")) == 1
        assert outcomes.get("skipped") == 1
        result.stdout.fnmatch_lines(["*CI=true, so this is a failure, not a skip*"])
    else:
        assert outcomes.get("skipped") == 3 and "failed" not in outcomes
