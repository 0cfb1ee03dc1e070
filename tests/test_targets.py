from __future__ import annotations

from pathlib import Path

import pytest

from explorer.cli import main
from search.errors import ConfigError
from search.targets import RUNTIMES, get_target, load_targets

GOOD = """
[targets.board]
description = "a board"
core = "cortex-m33"
clock_mhz = 110
flash_kb = 512
sram_kb = 256
runtime = "tflm"
budget = { app_flash_kb = 128, app_sram_kb = 64, latency_ms = 200 }
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "my_targets.toml"
    path.write_text(text)
    return path


def test_shipped_targets_cover_the_required_boards() -> None:
    targets = load_targets()
    for name in (
        "nucleo-l4r5zi",
        "nucleo-f446re",
        "stm32l552",
        "nrf5340",
        "stm32h743",
        "ek-ra8d1",
        "esp32-s3",
        "raspberry-pi-4",
        "raspberry-pi-5",
        "jetson-orin-nano",
    ):
        assert name in targets
    l552 = targets["stm32l552"]
    assert (l552.flash_kb, l552.sram_kb, l552.clock_mhz, l552.core) == (512, 256, 110, "cortex-m33")
    assert l552.flash_budget_kb == 384 and l552.sram_budget_kb == 192
    assert all(t.runtime in RUNTIMES for t in targets.values())
    assert {t.runtime for t in targets.values() if t.core.startswith("cortex-m")} == {"tflm"}
    assert targets["raspberry-pi-4"].runtime == "onnxruntime"


def test_user_file_loads(tmp_path: Path) -> None:
    t = get_target("board", write(tmp_path, GOOD))
    assert t.latency_budget_ms == 200 and t.is_mcu and t.source == "my_targets.toml"
    t2 = t.with_budgets(flash_budget_kb=100, latency_budget_ms=50)
    assert t2.flash_budget_kb == 100 and t2.latency_budget_ms == 50 and t2.sram_budget_kb == 192


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        (
            'runtime = "tflm"',
            'runtime = "tvm"',
            "unknown runtime 'tvm' (my_targets.toml, target 'board', key 'runtime')",
        ),
        (
            "flash_kb = 512",
            "flash_kb = -3",
            "flash_kb must be > 0, got -3 (my_targets.toml, target 'board', key 'flash_kb')",
        ),
        ("sram_kb = 256\n", "", "missing required key (my_targets.toml, target 'board', key 'sram_kb')"),
        ("clock_mhz = 110", 'clock_mhz = "fast"', "clock_mhz must be a number, got str 'fast'"),
        ("latency_ms = 200", "latency_ms = 0", "budget.latency_ms must be > 0, got 0"),
        ("app_flash_kb = 128", "app_flash_kb = 600", "budget.app_flash_kb (600) must be < flash_kb (512)"),
        ("core =", "cores =", "unknown key 'cores' (my_targets.toml, target 'board', key 'cores')"),
        ("app_sram_kb = 64", "app_sram_kb = -1", "budget.app_sram_kb must be >= 0, got -1"),
        # nan and inf are refused wherever a number is read (issue 10, item 4)
        ("flash_kb = 512", "flash_kb = nan", "flash_kb must be a finite number, got nan (my_targets.toml"),
        ("sram_kb = 256", "sram_kb = inf", "sram_kb must be a finite number, got inf (my_targets.toml"),
        ("clock_mhz = 110", "clock_mhz = -inf", "clock_mhz must be a finite number, got -inf"),
        ("clock_mhz = 110", "clock_mhz = 110\nhost_scale = nan", "host_scale must be a finite number, got nan"),
        ("latency_ms = 200", "latency_ms = inf", "budget.latency_ms must be a finite number, got inf"),
        ("app_flash_kb = 128", "app_flash_kb = nan", "budget.app_flash_kb must be a finite number, got nan"),
        ("app_sram_kb = 64", "app_sram_kb = +nan", "key 'budget.app_sram_kb')"),
    ],
)
def test_bad_values_name_file_target_and_key(tmp_path: Path, old: str, new: str, expected: str) -> None:
    assert old in GOOD
    with pytest.raises(ConfigError) as err:
        load_targets(write(tmp_path, GOOD.replace(old, new)))
    assert expected in str(err.value)


def test_invalid_utf8_is_one_clear_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "latin1.toml"
    path.write_bytes(GOOD.replace("a board", "caf\u00e9 board").encode("latin-1"))
    with pytest.raises(ConfigError, match=r"targets file .*latin1.toml is not UTF-8 text \(byte \d+: invalid"):
        load_targets(path)
    assert main(["targets", "--targets", str(path)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("tinyfront: error: targets file") and err.count("\n") == 1


def test_budget_overrides_must_be_finite() -> None:
    target = get_target("stm32l552")
    for bad in (float("nan"), float("inf"), 0.0, -1.0):
        with pytest.raises(ConfigError, match="must be a finite number > 0"):
            target.with_budgets(latency_budget_ms=bad)


def test_toml_syntax_error_has_line_number(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"TOML syntax error in my_targets.toml: .*line 6"):
        load_targets(write(tmp_path, GOOD.replace("flash_kb = 512", "flash_kb = = 512")))


def test_missing_file_and_unknown_target(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="targets file not found"):
        load_targets(tmp_path / "nope.toml")
    with pytest.raises(ConfigError, match="unknown target 'nope'; known targets: board"):
        get_target("nope", write(tmp_path, GOOD))


def test_cli_targets_table(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert main(["targets"]) == 0
    out = capsys.readouterr().out
    line = next(row for row in out.splitlines() if row.startswith("stm32l552"))
    assert line.split()[:8] == ["stm32l552", "cortex-m33", "110", "MHz", "512", "KiB", "256", "KiB"]
    assert main(["targets", "--targets", str(write(tmp_path, GOOD.replace("flash_kb = 512", "flash_kb = 0")))]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["tinyfront: error: flash_kb must be > 0, got 0 (my_targets.toml, target 'board', key 'flash_kb')"]


def test_cli_does_not_import_tensorflow() -> None:
    import subprocess
    import sys

    code = "import sys, explorer.cli, search; explorer.cli.build_parser(); print('tensorflow' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


# ---- latency_calibration: a target names the CPI calibration `tinyfront calibrate` wrote ----

#: Cycles per instruction of the synthetic calibration below (exact data, so the fit recovers it).
USER_CPI = 1.2


def write_calibration(path: Path, core: str = "cortex-m33", cpi: float = USER_CPI, clock_mhz: float = 110.0) -> Path:
    """A calibration file in the format ``tinyfront calibrate`` writes, fitted to exact synthetic rows."""
    import json

    from search import cpi_model as cm

    samples = []
    for i, instructions in enumerate((2_000_000, 9_000_000, 40_000_000)):
        ms = cpi * instructions / (clock_mhz * 1000.0)
        row = cm.PublishedRow(f"m{i}", f"m{i}.tflite", 0, core, "board", clock_mhz, "tflm+cmsis-nn", ms, "test")
        samples.append(cm.Sample(row, instructions, 10_000))
    fit = cm.fit(samples, flash_term=False)
    data = {"name": "board (tinyfront calibrate lat.csv)", "target": "board", "core": core, "fit": fit.to_dict()}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data))
    return path


def with_calibration(value: str) -> str:
    return GOOD.replace('runtime = "tflm"', f'runtime = "tflm"\nlatency_calibration = "{value}"')


def test_latency_calibration_is_resolved_next_to_the_targets_file(tmp_path: Path) -> None:
    cal = write_calibration(tmp_path / "calibrations" / "board.json")
    t = get_target("board", write(tmp_path, with_calibration("calibrations/board.json")))
    assert t.latency_calibration == str(cal.resolve())
    assert get_target("board", write(tmp_path, GOOD)).latency_calibration is None


def test_latency_calibration_expands_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    cal = write_calibration(tmp_path / "home" / "cal" / "board.json")
    other = tmp_path / "elsewhere"
    other.mkdir()
    t = get_target("board", write(other, with_calibration("~/cal/board.json")))
    assert t.latency_calibration == str(cal.resolve())


@pytest.mark.parametrize(
    ("setup", "expected"),
    [
        ("missing", "latency_calibration file not found: "),
        ("not-json", "is not readable JSON"),
        ("no-fit", "is not a CPI fit"),
        ("zero-cpi", "a CPI must be a finite number > 0, got 0"),
        ("other-class", "has a CPI for cortex-m4, not for cortex-m33 (the class of core 'cortex-m33')"),
        ("no-runner-core", "needs a core with a device runner and a CPI model, not 'xtensa-lx7'"),
    ],
)
def test_latency_calibration_refusals_name_file_target_and_key(tmp_path: Path, setup: str, expected: str) -> None:
    import json

    cal = tmp_path / "cal.json"
    text = with_calibration("cal.json")
    if setup == "not-json":
        cal.write_text("cpi = 1.2\n")
    elif setup == "no-fit":
        cal.write_text(json.dumps({"name": "x", "cpi": {"cortex-m33": 1.2}}))
    elif setup == "zero-cpi":
        data = json.loads(write_calibration(cal).read_text())
        data["fit"]["cpi"]["cortex-m33"] = 0
        cal.write_text(json.dumps(data))
    elif setup == "other-class":
        write_calibration(cal, core="cortex-m4")
    elif setup == "no-runner-core":
        write_calibration(cal)
        text = text.replace('core = "cortex-m33"', 'core = "xtensa-lx7"')
    with pytest.raises(ConfigError) as err:
        load_targets(write(tmp_path, text))
    message = str(err.value)
    assert expected in message
    assert message.endswith("(my_targets.toml, target 'board', key 'latency_calibration')")


def test_user_calibration_gives_cpi_times_instructions_over_clock(tmp_path: Path) -> None:
    from search.cpi_model import estimate_latency, load_fit

    write_calibration(tmp_path / "cal.json")
    t = get_target("board", write(tmp_path, with_calibration("cal.json")))
    assert t.latency_calibration is not None
    fit, meta = load_fit(Path(t.latency_calibration))
    assert fit.cpi["cortex-m33"] == pytest.approx(USER_CPI, rel=1e-9)
    figure = estimate_latency(10_000_000, 50_000, t.core, t.clock_mhz, calibration=(fit, meta))
    # 1.2 cycles/instruction x 10 M instructions / 110 MHz = 109.091 ms (no flash term in a user calibration)
    assert figure.value == pytest.approx(USER_CPI * 10_000_000 / (110 * 1000), abs=1e-3)
    assert figure.value == pytest.approx(109.091, abs=1e-3)
    assert figure.kind == "estimated"
    assert f"calibration: board (tinyfront calibrate lat.csv) [{t.latency_calibration}]" in figure.method
    assert figure.error_pct == pytest.approx(0.0, abs=1e-6)  # exact rows: zero leave-one-out error


def test_device_figures_refuse_a_bad_calibration_before_running(tmp_path: Path) -> None:
    from search.device_runner import device_figures
    from search.errors import MeasurementError

    (tmp_path / "bad.json").write_text("{}")
    with pytest.raises(MeasurementError, match=r"bad.json is not a CPI fit .*missing key 'fit'"):
        device_figures(b"", "cortex-m33", 110.0, calibration=tmp_path / "bad.json")


def test_targets_without_the_key_serialise_as_before(tmp_path: Path) -> None:
    """Studies recorded target.to_dict() before latency_calibration existed: resuming must still match."""
    from search.targets import Target

    t = get_target("board", write(tmp_path, GOOD))
    old_record = t.to_dict()
    assert "latency_calibration" not in old_record
    assert Target.from_dict(old_record) == t and Target.from_dict(old_record).to_dict() == old_record
    write_calibration(tmp_path / "cal.json")
    c = get_target("board", write(tmp_path, with_calibration("cal.json")))
    assert Target.from_dict(c.to_dict()) == c and c.to_dict()["latency_calibration"].endswith("cal.json")


def test_calibrate_prints_the_line_to_paste(tmp_path: Path) -> None:
    import tomllib

    from explorer.commands.calibrate import paste_line

    targets = write(tmp_path, GOOD)
    cal = write_calibration(tmp_path / "calibrations" / "board.json")
    line = paste_line(targets, "board", cal)
    assert line.endswith('latency_calibration = "calibrations/board.json"') and "[targets.board]" in line
    pasted = line.split(": ", 1)[1]
    assert tomllib.loads(pasted) == {"latency_calibration": "calibrations/board.json"}
    (tmp_path / "sub").mkdir()
    outside = paste_line(tmp_path / "sub" / "t.toml", "board", cal)
    assert outside.endswith(f'latency_calibration = "{cal.resolve()}"')
    targets.write_text(with_calibration("calibrations/board.json"))
    assert get_target("board", targets).latency_calibration == str(cal.resolve())
