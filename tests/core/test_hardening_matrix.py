"""Issue 16, the matrix/CLI boundary: what a hostile or careless matrix (or flag) gets is one clear message and
exit 2, never a shell injection, a leaked credential, a file outside the matrix's folder or a traceback."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from factory.cli.main import main
from factory.core.errors import InputError
from factory.core.matrix import load
from factory.core.redact import has_userinfo, redact
from tests.conftest import NIXL, ROOT, SHIPPED, SMALL

SECRET = "s3cr3t-t0ken"



def run(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def refused(capsys, path, command="check", *extra) -> str:
    """The one message a bad matrix gets: exit 2, on stderr, no traceback."""
    code, out, err = run(capsys, command, *extra, "--matrix", path)
    assert code == 2, (code, out, err)
    assert err.startswith("factory: ") and "Traceback" not in err
    assert str(path) in err
    return err


def with_extra(text: str = SMALL, extra: str = NIXL) -> str:
    return text.replace("\n[[rule]]", extra + "\n[[rule]]", 1)


@pytest.fixture
def layered(write_matrix, tmp_path):
    """write_matrix plus the extra layer's Dockerfile."""

    def write(text: str) -> Path:
        path = write_matrix(text)
        (tmp_path / "dockerfiles" / "nixl.Dockerfile").write_text("ARG BASE_IMAGE\nFROM ${BASE_IMAGE}\n")
        return path

    return write


# -- 1. names are Docker tags: no shell injection through a name ----------------------------------------------

BAD_NAMES = ["2.10.0-$(touch /tmp/x)-cu131", "../../x", "a b", "-x", ".x", "x;y", "x\ny", "x" * 129, "", "é"]


@pytest.mark.parametrize("name", BAD_NAMES, ids=range(len(BAD_NAMES)))
def test_bad_base_name_is_refused_naming_file_table_and_field(capsys, write_matrix, name):
    quoted = name.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    path = write_matrix(SMALL.replace('[base."2.10.0-cu131"]', f'[base."{quoted}"]'))
    err = refused(capsys, path)
    assert "base " in err and "(its name)" in err and "not a valid name" in err
    assert re.search(rf"{re.escape(str(path))}:3: ", err), "the line of the table"


@pytest.mark.parametrize("name", ["0.17.0-t4;rm -rf ~", "0.17.0-t4/../../x", "$(id)"])
def test_bad_tag_name_is_refused_even_with_a_waiver(capsys, write_matrix, name):
    text = SMALL.replace('[image."0.17.0-t4"]', f'[image."{name}"]\nallow = [{{ rule = "builtin/tag-name", '
                                                  'reason = "waivers cannot allow a bad name" }]')
    err = refused(capsys, write_matrix(text))
    assert 'image ' in err and "not a valid name" in err


def test_bad_extra_name_and_base_reference_are_refused(capsys, layered):
    err = refused(capsys, layered(with_extra(extra=NIXL.replace("[extra.nixl]", '[extra."ni$(x)"]'))))
    assert "extra 'ni$(x)'" in err and "not a valid name" in err
    err = refused(capsys, layered(SMALL.replace('base = "2.10.0-cu131"', 'base = "$(touch x)"', 1)))
    assert 'field "base"' in err and "not a valid name" in err


def test_names_made_from_the_matrix_are_checked_too(capsys, write_matrix):
    long_tag = "0.17.0-t4" + "x" * 117  # 126 characters: valid; with -r10 it is not
    text = SMALL.replace('[image."0.17.0-t4"]', f'[image."{long_tag}"]\nrevision = 10')
    err = refused(capsys, write_matrix(text))
    assert 'field "revision"' in err and "longer than 128" in err


def test_plan_format_github_never_prints_a_bad_name(capsys, write_matrix):
    path = write_matrix(SMALL.replace('[base."2.10.0-cu131"]', '[base."2.10.0-$(touch /tmp/x)-cu131"]'))
    code, out, err = run(capsys, "plan", "--format", "github", "--matrix", path)
    assert code == 2 and out == "" and "not a valid name" in err


def test_github_matrix_refuses_values_a_shell_would_read():
    from factory.core.exports.ci import github_matrix
    from factory.core.plan import Plan, build_plan
    from factory.core.resolve import resolve

    plan = build_plan(resolve(load(SHIPPED)), ["0.33.0-t5"])
    from dataclasses import replace

    bad = Plan(images=(replace(plan.images[0], name="x$(id)"), *plan.images[1:]), namespace=plan.namespace)
    with pytest.raises(InputError, match="cannot be a CI job value"):
        github_matrix(bad)


def test_example_workflow_passes_matrix_values_through_env_and_quotes_them():
    text = (ROOT / "examples" / "github-workflow.yml").read_text()
    runs = [line for line in text.splitlines() if re.match(r"\s*(- )?run:", line)]
    assert runs and not any("${{" in line for line in runs), "no ${{ }} pasted into a run: script"
    builds = [line for line in runs if "factory build" in line]
    assert len(builds) == 4 and all('"$NAME"' in line for line in builds)
    assert text.count("NAME: ${{ matrix.name }}") == 4  # base, runtime, image, extra jobs


# -- 2. no credentials in any URL of the matrix, none in any message ------------------------------------------

URL_FIELDS = [
    ("defaults", "index_url", 'schema = 1\n', '[defaults]\nindex_url = "{url}"\n'),
    ("defaults", "torch_index_url", 'schema = 1\n', '[defaults]\ntorch_index_url = "{url}"\n'),
    ("defaults", "flashinfer_index_url", 'schema = 1\n', '[defaults]\nflashinfer_index_url = "{url}"\n'),
    ("defaults", "source_url", 'schema = 1\n', '[defaults]\nsource_url = "{url}"\n'),
    ("image", "sources.vllm.repo", 'transformers = "4.57.6"\n',
     'transformers = "4.57.6"\nsources.vllm = {{ repo = "{url}", ref = "main" }}\n'),
    ("base", "sources.torch.repo", 'torchaudio = "2.10.0"\n',
     'torchaudio = "2.10.0"\nsources.torch = {{ repo = "{url}", ref = "main" }}\n'),
    ("rule", "source", 'source = "https://pypi.org/project/vllm/0.17.0/"',
     'source = "{url}"'),
    ("image", "allow.0.reason", 'reason = "the -t5 variant runs Transformers 5 on purpose"',
     'reason = "see {url} for why"'),
]


@pytest.mark.parametrize("table, field, old, new", URL_FIELDS, ids=[f[1] for f in URL_FIELDS])
@pytest.mark.parametrize("userinfo", [f"user:{SECRET}@", f"{SECRET}@", f"user:{SECRET}@x@"])
def test_userinfo_in_any_url_of_the_matrix_is_refused_and_never_shown(capsys, write_matrix, table, field, old, new,
                                                                       userinfo):
    url = f"https://{userinfo}example.org/simple"
    if field.startswith("sources"):
        url = f"https://{userinfo}github.com/example/fork.git"
    assert old in SMALL
    path = write_matrix(SMALL.replace(old, new.format(url=url), 1))
    err = refused(capsys, path)
    assert field in err and "user-info" in err
    assert SECRET not in err


@pytest.mark.parametrize("url, kept", [
    ("https://user:pw@host/simple", "https://***@host/simple"),
    ("git+https://tok@github.com/a/b.git@v1", "git+https://***@github.com/a/b.git@v1"),
    ("see http://a:b@c:8080/x and ssh://git@h/r", "see http://***@c:8080/x and ssh://***@h/r"),
    ("https://u:p@ss@host/x", "https://***@host/x"),
    ("https://host/path@v1 no userinfo", "https://host/path@v1 no userinfo"),
    ("git@github.com:org/repo.git", "git@github.com:org/repo.git"),
])
def test_redact(url, kept):
    assert redact(url) == kept
    assert redact(redact(url)) == redact(url)
    assert has_userinfo(url) == (url != kept)


def test_every_cli_error_message_is_redacted(capsys, monkeypatch):
    from factory.cli import main as cli

    def failing(args):
        raise InputError(f"cannot reach https://user:{SECRET}@index.example/simple")

    def oserror(args):
        raise PermissionError(13, "Permission denied", f"https://u:{SECRET}@x/y")

    monkeypatch.setitem(cli.COMMANDS, "list", failing)
    code, _, err = run(capsys, "list")
    assert code == 2 and SECRET not in err and "https://***@index.example/simple" in err
    monkeypatch.setitem(cli.COMMANDS, "list", oserror)
    code, _, err = run(capsys, "list")
    assert code == 2 and SECRET not in err and "Permission denied" in err


@pytest.mark.parametrize("url", [f"ftp://u:{SECRET}@example.org/simple", f"http://u:{SECRET}@[::1",
                                 f"https://u:{SECRET}@/simple", f"https://u:{SECRET}@example.org/ x"])
def test_bad_index_url_flag_with_userinfo_is_never_shown(capsys, url):
    code, _, err = run(capsys, "check", "--upstream", "--index-url", url, "--matrix", SHIPPED)
    assert code == 2 and "--index-url" in err and SECRET not in err and "Traceback" not in err


# -- 4. every path from the matrix is a regular file inside the matrix's folder ---------------------------------

@pytest.mark.parametrize("path", ["/etc/shadow", "/dev/zero", "../outside.Dockerfile", "dockerfiles/../../x",
                                  "C:/x.Dockerfile", "dockerfiles\\x"])
def test_dockerfile_path_outside_the_matrix_folder_is_refused(capsys, write_matrix, path):
    text = SMALL.replace("schema = 1\n", f"schema = 1\n\n[defaults.dockerfiles]\nvllm = '{path}'\n")
    err = refused(capsys, write_matrix(text))
    assert 'field "defaults.dockerfiles.vllm"' in err and "inside the matrix's folder" in err


def test_extra_dockerfile_outside_is_refused(capsys, layered):
    err = refused(capsys, layered(with_extra(extra=NIXL.replace("dockerfiles/nixl.Dockerfile", "/etc/passwd"))))
    assert 'extra "nixl", field "dockerfile"' in err


def test_symlink_escaping_the_matrix_folder_is_refused(capsys, write_matrix, tmp_path_factory):
    outside = tmp_path_factory.mktemp("outside")
    (outside / "vllm.Dockerfile").write_text("FROM scratch\n")
    path = write_matrix(SMALL)
    link = path.parent / "dockerfiles" / "vllm.Dockerfile"
    link.unlink()
    link.symlink_to(outside / "vllm.Dockerfile")
    err = refused(capsys, path)
    assert 'field "defaults.dockerfiles.vllm"' in err and "resolves outside the matrix's folder" in err
    link.unlink()
    (path.parent / "elsewhere").symlink_to(outside)  # a symlinked folder escapes just the same
    link.symlink_to(path.parent / "elsewhere" / "vllm.Dockerfile")
    assert "resolves outside" in refused(capsys, path)


def test_a_symlink_inside_the_folder_is_fine(capsys, write_matrix):
    path = write_matrix(SMALL)
    folder = path.parent / "dockerfiles"
    (folder / "real.Dockerfile").write_text((folder / "vllm.Dockerfile").read_text())
    (folder / "vllm.Dockerfile").unlink()
    (folder / "vllm.Dockerfile").symlink_to("real.Dockerfile")
    assert run(capsys, "plan", "--matrix", path)[0] == 0


@pytest.mark.parametrize("kind", ["folder", "fifo"])
def test_dockerfile_that_is_not_a_regular_file_is_refused(capsys, write_matrix, kind):
    path = write_matrix(SMALL)
    target = path.parent / "dockerfiles" / "vllm.Dockerfile"
    target.unlink()
    target.mkdir() if kind == "folder" else os.mkfifo(target)
    err = refused(capsys, path)
    assert "not a regular file" in err and 'field "defaults.dockerfiles.vllm"' in err


def test_labels_sync_never_writes_outside_its_folder(tmp_path):
    from factory.core.exports.golden import sync

    folder = tmp_path / "labels"
    for name in ("../../x.json", "/tmp/x.json", "..", "a/b.json"):
        with pytest.raises(InputError, match="not a plain file name"):
            sync(folder, {name: "{}"}, write=True)
    assert not folder.exists() and not (tmp_path.parent / "x.json").exists()
    folder.mkdir()
    victim = tmp_path / "victim.json"
    victim.write_text("keep")
    (folder / "a.json").symlink_to(victim)
    sync(folder, {"a.json": "{}\n"}, write=True)
    assert victim.read_text() == "keep" and (folder / "a.json").read_text() == "{}\n"
    assert not (folder / "a.json").is_symlink()


@pytest.mark.parametrize("flag", ["--check", "--write"])
def test_labels_dir_that_is_not_a_folder(capsys, flag):
    code, _, err = run(capsys, "labels", flag, "--dir", "/dev/null", "--matrix", SHIPPED)
    assert code == 2 and "/dev/null: not a folder" in err and "Traceback" not in err


# -- 9. no tracebacks ------------------------------------------------------------------------------------------

def test_arrays_nested_500_deep(capsys, write_matrix):
    err = refused(capsys, write_matrix("schema = 1\n[defaults]\nvendor = " + "[" * 500 + "]" * 500 + "\n"))
    assert "nested too deeply" in err
    err = refused(capsys, write_matrix("schema = 1\n[defaults]\nvendor = " + "[" * 100 + "]" * 100 + "\n"))
    assert "nested deeper than" in err


@pytest.mark.parametrize("template, needle", [
    ("nvidia/cuda:{foo}", "not {foo}"), ("nvidia/cuda:{0}", "not {0}"), ("nvidia/cuda:{", "not a valid cuda_image"),
    ("nvidia/cuda:{cuda!r}", "not {cuda}"), ("nvidia/cuda:{cuda:>9}", "not {cuda}"), ("nvidia/cuda:{}", "not {}"),
    ("Nvidia/CUDA:{cuda}", "not an image reference"), ("nvidia/cuda:{cuda}@sha256:00", "not an image reference"),
])
def test_cuda_image_template_with_unknown_fields(capsys, write_matrix, template, needle):
    text = SMALL.replace("schema = 1\n", f'schema = 1\n\n[defaults]\ncuda_image = "{template}"\n')
    err = refused(capsys, write_matrix(text), "plan")
    assert 'field "defaults.cuda_image"' in err and needle in err


def test_cuda_linked_template_with_unknown_fields(capsys, layered):
    err = refused(capsys, layered(with_extra(extra=NIXL + 'cuda_linked = ["/opt/{foo}/lib"]\n')), "plan")
    assert "cuda_linked" in err and "not {foo}" in err


@pytest.mark.parametrize("content, needle", [
    (b"FROM x\nCOPY \xff /x\n", "not UTF-8"),
    (b'FROM x\nCOPY "a /x\n', "unbalanced quote"),
    (b"FROM x\nCOPY ../../../etc/passwd /x\n", "outside the build context"),
    (b"FROM x\nCOPY\n", "needs a source and a destination"),
])
def test_bad_dockerfiles_get_one_message(capsys, write_matrix, content, needle):
    path = write_matrix(SMALL)
    (path.parent / "dockerfiles" / "vllm.Dockerfile").write_bytes(content)
    code, _, err = run(capsys, "plan", "--matrix", path)
    assert code == 2 and needle in err and "vllm.Dockerfile" in err and "Traceback" not in err


def test_unreadable_dockerfile(capsys, write_matrix, monkeypatch):
    path = write_matrix(SMALL)
    dockerfile = path.parent / "dockerfiles" / "vllm.Dockerfile"
    real = Path.read_text

    def read_text(self, *args, **kwargs):
        if self == dockerfile:
            raise PermissionError(13, "Permission denied", str(self))
        return real(self, *args, **kwargs)

    monkeypatch.setattr(Path, "read_text", read_text)
    code, _, err = run(capsys, "plan", "--matrix", path)
    assert code == 2 and "cannot read the Dockerfile (Permission denied)" in err


def test_docs_without_a_readme(capsys, write_matrix):
    code, _, err = run(capsys, "docs", "--check", "--matrix", write_matrix(SMALL))
    assert code == 2 and "README.md: No such file or directory" in err and "Traceback" not in err


def test_bake_output_into_a_missing_folder_or_onto_a_folder(capsys, write_matrix, tmp_path):
    path = write_matrix(SMALL)
    code, _, err = run(capsys, "bake", "-o", tmp_path / "missing" / "bake.json", "--matrix", path)
    assert code == 2 and "does not exist" in err
    code, _, err = run(capsys, "bake", "-o", tmp_path, "--matrix", path)
    assert code == 2 and "is a folder" in err
    code, out, _ = run(capsys, "bake", "-o", tmp_path / "bake.json", "--matrix", path)
    assert code == 0 and (tmp_path / "bake.json").is_file()


@pytest.mark.parametrize("url", ["http://[::1", "", "ftp://example.org/simple", "https:///simple", "pypi.org",
                                 "https://example.org/ simple", "http://example.org:99999/"])
def test_bad_index_url_flag(capsys, url):
    code, _, err = run(capsys, "check", "--upstream", "--index-url", url, "--matrix", SHIPPED)
    assert code == 2 and "--index-url" in err and "Traceback" not in err


def test_no_docker_on_path_is_one_clear_message(tmp_path):
    env = {**os.environ, "PATH": str(tmp_path)}
    done = subprocess.run([sys.executable, "-m", "factory", "verify", "example/x:1", "--matrix", str(SHIPPED)],
                          capture_output=True, text=True, cwd=ROOT, env=env, timeout=120)
    assert done.returncode == 1, done.stderr
    assert done.stderr.strip() == ("factory: docker is not installed: no `docker` client on PATH "
                                   "(`make engine` installs Docker Engine)")


def test_client_not_found_is_mapped_without_importing_python_on_whales(capsys, monkeypatch):
    from python_on_whales.client_config import ClientNotFoundError

    from factory.cli import main as cli

    def missing(args):
        raise ClientNotFoundError()

    monkeypatch.setitem(cli.COMMANDS, "list", missing)
    code, _, err = run(capsys, "list")
    assert code == 1 and "docker is not installed" in err


# -- 10. values check refuses -----------------------------------------------------------------------------------

@pytest.mark.parametrize("old, new, field", [
    ('cuda = "13.1.0"', 'cuda = "13.1.0 "', "cuda"),
    ('cuda = "13.1.0"', 'cuda = " 13.1.0"', "cuda"),
    ('cuda = "13.1.0"', 'cuda = "13.1.0\\n"', "cuda"),
    ('cuda = "13.1.0"', 'cuda = "13.1 .0"', "cuda"),
    ('vllm = "0.17.0"', 'vllm = "0.17.0\\nRUN id"', "vllm"),
    ('transformers = "4.57.6"', 'transformers = "4.57.6"\nsources.vllm = { repo = "https://github.com/a/b.git", '
                                'ref = "" }', "sources.vllm.ref"),
    ('transformers = "4.57.6"', 'transformers = "4.57.6"\nsources.vllm = { repo = "https://github.com/a/b.git", '
                                'ref = "--upload-pack=touch x" }', "sources.vllm.ref"),
    ('transformers = "4.57.6"', 'transformers = "4.57.6"\nsources.vllm = { repo = "https://github.com/a/b.git", '
                                'ref = "a b" }', "sources.vllm.ref"),
    ('transformers = "4.57.6"', 'transformers = "4.57.6"\nsources.vllm = { repo = "--upload-pack=x", ref = "v1" }',
     "sources.vllm.repo"),
    ('transformers = "4.57.6"', 'transformers = "4.57.6"\nsources.vllm = { repo = "file:///etc", ref = "v1" }',
     "sources.vllm.repo"),
    ('transformers = "4.57.6"', 'transformers = "4.57.6"\ndefault = 1', "default"),
    ('transformers = "4.57.6"', 'transformers = "4.57.6"\nrevision = true', "revision"),
])
def test_values_check_refuses(capsys, write_matrix, old, new, field):
    assert old in SMALL
    err = refused(capsys, write_matrix(SMALL.replace(old, new, 1)))
    assert f'field "{field}"' in err


@pytest.mark.parametrize("defaults, field", [
    ('label_namespace = "dev.scitrera=x"', "label_namespace"),
    ('label_namespace = "Dev.Scitrera"', "label_namespace"),
    ('label_namespace = "scitrera"', "label_namespace"),
    ('label_namespace = "dev..scitrera"', "label_namespace"),
    ('label_namespace = "dev.scitrera\\nx=y"', "label_namespace"),
    ('vendor = "scitrera\\norg.opencontainers.image.source=https://evil"', "vendor"),
    ('vendor = "sci\\ttrera"', "vendor"),
    ('repositories.vllm = "Scitrera/dgx-spark-vllm"', "repositories.vllm"),
    ('repositories.base = "scitrera/DGX"', "repositories.base"),
    ('repositories.base = "scitrera/x:tag"', "repositories.base"),
    ('repositories.base = "https://scitrera/x"', "repositories.base"),
    ('build.max_jobs = true', "build.max_jobs"),
    ('build.max_jobs = 8.0', "build.max_jobs"),
    ('build.nvcc_threads = false', "build.nvcc_threads"),
    ('build.cuda_arch = "sm_121 --x"', "build.cuda_arch"),
    ('index_url = ""', "index_url"),
    ('index_url = "ftp://x/simple"', "index_url"),
    ('index_url = "http://[::1"', "index_url"),
    ('source_url = "javascript:alert(1)"', "source_url"),
    ('platform = "linux/arm64\\n"', "platform"),
])
def test_defaults_check_refuses(capsys, write_matrix, defaults, field):
    text = SMALL.replace("schema = 1\n", f"schema = 1\n\n[defaults]\n{defaults}\n")
    err = refused(capsys, write_matrix(text))
    assert f'field "defaults.{field}"' in err


def test_schema_true_is_not_1(capsys, write_matrix):
    assert 'field "schema"' in refused(capsys, write_matrix(SMALL.replace("schema = 1", "schema = true")))


def test_values_that_stay_valid(capsys, write_matrix):
    """The rules are not wider than they need be: registries with ports, local hosts, an empty FlashInfer index."""
    text = SMALL.replace("schema = 1\n", """schema = 1

[defaults]
label_namespace = "io.example-org.images"
flashinfer_index_url = ""
torch_index_url = "http://127.0.0.1:8080/simple"
cuda_image = "127.0.0.1:5000/cuda-twin:{cuda}-devel"
[defaults.repositories]
base = "127.0.0.1:5000/e2e-amd64/dgx-spark-pytorch-dev"
vllm = "localhost/x__y/v.l-lm"
""").replace('transformers = "4.57.6"', 'transformers = "4.57.6"\nsources.vllm = { repo = '
             '"https://github.com/vllm-project/vllm.git", ref = "v0.14.0+glm4-moe-lite-mla" }', 1)
    code, out, err = run(capsys, "check", "--matrix", write_matrix(text))
    assert code == 0, err


def test_jobs_0_on_build_and_release(capsys):
    for command in ("build", "release"):
        code, _, err = run(capsys, command, "0.33.0-t5", "--dry-run", "--jobs", "0", "--matrix", SHIPPED)
        assert code == 2 and "--jobs must be at least 1" in err


def test_check_upstream_with_an_empty_index_url_is_refused(capsys):
    code, _, err = run(capsys, "check", "--upstream", "--index-url", "", "--matrix", SHIPPED)
    assert code == 2 and "--index-url" in err and "is not an http(s) URL" in err


# -- 11. locating errors is linear -------------------------------------------------------------------------------

def test_six_thousand_bad_tags_are_reported_fast(write_matrix):
    tags = "".join(f'\n[image."bad-{i}"]\nbase = "2.10.0-cu131"\nvllm = "x{i}"\ntriton = "3.6.0"\n'
                   f'flashinfer = "0.6.4"\ntransformers = "5.3.0"\n' for i in range(6000))
    path = write_matrix(SMALL + tags)
    started = time.monotonic()
    with pytest.raises(InputError) as info:
        load(path)
    assert time.monotonic() - started < 5, "each error must not re-scan the file (it took 19 s)"
    message = str(info.value)
    assert message.startswith(f"{path}: 6000 error(s)") and "... and 5900 more" in message
    line = next(i for i, text in enumerate(path.read_text().splitlines(), 1) if text == 'vllm = "x0"')
    assert f'{path}:{line}: image "bad-0", field "vllm"' in message


def test_error_lines_are_found_in_nested_tables_and_arrays(write_matrix):
    text = SMALL.replace("schema = 1\n", 'schema = 1\n\n[defaults.build]\nmax_jobs = 0\n').replace(
        'source = "https://pypi.org/project/vllm/0.17.0/"', 'source = "https://pypi.org/project/vllm/0.17.0/"\n'
        'severity = "fatal"')
    path = write_matrix(text)
    with pytest.raises(InputError) as info:
        load(path)
    lines = path.read_text().splitlines()
    jobs = lines.index("max_jobs = 0") + 1
    severity = lines.index('severity = "fatal"') + 1
    assert f'{path}:{jobs}: field "defaults.build.max_jobs"' in str(info.value)
    assert f'{path}:{severity}: rule #1, field "severity"' in str(info.value)
