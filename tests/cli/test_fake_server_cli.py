"""The ``fake-server`` command: in-process with click's runner (options, errors) and as a real subprocess
(``python -m batchrunner.fakeserver``: the port on the first stdout line, clean exit on SIGTERM/SIGINT)."""

from __future__ import annotations

import json
import signal
from pathlib import Path

import openai
import pytest
from click.testing import CliRunner
from helpers.fake_server_fixtures import StartFakeServerProcess
from openai.types.chat import ChatCompletionMessageParam

from batchrunner.fakeserver import FaultKind
from batchrunner.fakeserver.command import fake_server


def chat(text: str) -> list[ChatCompletionMessageParam]:
    return [{"role": "user", "content": text}]


def test_help_documents_every_option_and_the_directive_syntax() -> None:
    result = CliRunner().invoke(fake_server, ["--help"], terminal_width=200)
    assert result.exit_code == 0
    for flag in (
        "--port",
        "--api-key",
        "--latency-ms",
        "--jitter-ms",
        "--seed",
        "--schedule",
        "--rpm",
        "--tpm",
        "--batch-seconds",
        "--batch-expire-fraction",
        "--batch-api-faults",
    ):
        assert flag in result.output
    for kind in FaultKind:
        assert f"--p{kind.value} " in result.output
    assert "[[fault:500,500]]" in result.output and "[[fault:*400]]" in result.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--p500", "0.7", "--preset", "0.5"], "sum to at most 1"),
        (["--p429", "1.5"], "not in the range"),
        (["--rpm", "0"], "not in the range"),
        (["--schedule", "missing.json"], "does not exist"),
        (["--batch-expire-fraction", "1"], "not in the range"),
        (["--batch-api-faults", "teapot"], "unknown fault 'teapot'"),
    ],
)
def test_bad_options_exit_2_with_a_reason(args: list[str], message: str) -> None:
    result = CliRunner().invoke(fake_server, args)
    assert result.exit_code == 2 and message in result.output


def test_a_bad_schedule_file_is_a_usage_error(tmp_path: Path) -> None:
    path = tmp_path / "schedule.json"
    path.write_text(json.dumps({"p": ["500", "teapot"]}))
    result = CliRunner().invoke(fake_server, ["--schedule", str(path)])
    assert result.exit_code == 2 and "unknown fault 'teapot'" in result.output


@pytest.mark.slow  # the fake server as a subprocess
async def test_subprocess_prints_its_port_serves_and_stops_cleanly(
    fake_server_process: StartFakeServerProcess, tmp_path: Path
) -> None:
    schedule = tmp_path / "schedule.json"
    schedule.write_text(json.dumps({"scheduled": ["503"]}))
    server = fake_server_process("--api-key", "sekrit", "--schedule", str(schedule), "--seed", "1")
    assert server.port > 0 and server.openai_base_url == f"http://127.0.0.1:{server.port}/v1"
    async with openai.AsyncOpenAI(base_url=server.openai_base_url, api_key="sekrit", max_retries=0) as oai:
        assert (await oai.chat.completions.create(model="m", messages=chat("hello"))).choices
        with pytest.raises(openai.InternalServerError):
            await oai.chat.completions.create(model="m", messages=chat("scheduled"))
    async with openai.AsyncOpenAI(base_url=server.openai_base_url, api_key="wrong", max_retries=0) as oai:
        with pytest.raises(openai.AuthenticationError):
            await oai.chat.completions.create(model="m", messages=chat("hello"))
    assert server.stats()["by_status"] == {"200": 1, "503": 1, "401": 1}
    assert server.stop() == 0


@pytest.mark.slow  # the fake server as a subprocess
def test_sigint_stops_the_subprocess_cleanly(fake_server_process: StartFakeServerProcess) -> None:
    server = fake_server_process()
    assert server.process is not None
    process = server.process
    process.send_signal(signal.SIGINT)
    assert process.wait(timeout=10) == 0
    assert server.stop() == 0
