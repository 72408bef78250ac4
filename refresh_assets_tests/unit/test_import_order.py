"""skops is imported before Dagster where models are saved or loaded in process (refresh_assets/import_order.py).

skops' import looks every SciPy ufunc up in sys.modules in order; these tests hold that the order is what makes it
short (SciPy's ufunc module comes before Dagster's modules), that the CLI's refresh and the forkserver get that
order, and that skops trusts exactly the same types either way. Each case runs in a fresh interpreter: import
order is process-wide.
"""

import json
import os
import subprocess
import sys
import textwrap

from refresh_assets.executors import FORKSERVER_PRELOAD

_ORDER = """
    names = list(sys.modules)
    import skops.io._trusted_types as tt
    out = {"ufuncs_at": names.index("scipy.special._ufuncs"), "dagster_at": names.index("dagster"),
           "modules": len(names), "ufunc_names": tt.SCIPY_UFUNC_TYPE_NAMES,
           "estimator_names": tt.SKLEARN_ESTIMATOR_TYPE_NAMES}
    print(json.dumps(out))
"""


def _python(*parts: str) -> dict:
    code = "".join(textwrap.dedent(part) for part in parts)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env={**os.environ, "PYTHONWARNINGS": "ignore"}, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_skops_first_puts_scipy_ufuncs_before_dagster_and_trusts_the_same_types():
    first = _python("""
        import json, sys
        from refresh_assets.import_order import model_io_before_dagster
        assert model_io_before_dagster() is True
        import refresh_assets.definitions
    """, _ORDER)
    after = _python("""
        import json, sys
        import refresh_assets.definitions
        import skops.io
    """, _ORDER)
    # skops' scan for each ufunc stops at the first module holding it: before Dagster's modules, not after them
    assert first["ufuncs_at"] < first["dagster_at"]
    assert after["ufuncs_at"] > after["dagster_at"]
    assert first["ufuncs_at"] * 2 < after["ufuncs_at"], (first["ufuncs_at"], after["ufuncs_at"])
    assert first["ufunc_names"] == after["ufunc_names"] and len(first["ufunc_names"]) > 100
    assert first["estimator_names"] == after["estimator_names"]


def test_too_late_is_a_no_op():
    out = _python("""
        import json, sys
        import dagster
        from refresh_assets.import_order import model_io_before_dagster
        print(json.dumps({"did": model_io_before_dagster(), "skops": "skops.io" in sys.modules}))
    """)
    assert out == {"did": False, "skops": False}


def test_the_refresh_command_imports_skops_before_dagster():
    # an invalid partition: the command loads the code location, then refuses the input before any run
    out = _python("""
        import json, sys
        from refresh_assets import cli
        code = cli.main(["refresh", "--partition", "not-a-date"])
        names = list(sys.modules)
        print(json.dumps({"code": code, "skops": names.index("skops.io"), "dagster": names.index("dagster")}))
    """)
    assert out["code"] != 0
    assert out["skops"] < out["dagster"]


def test_the_forkserver_preloads_skops_first():
    assert FORKSERVER_PRELOAD[0] == "skops.io"
    assert FORKSERVER_PRELOAD.index("skops.io") < FORKSERVER_PRELOAD.index("dagster")
