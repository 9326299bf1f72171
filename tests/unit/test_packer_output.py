"""Reading `packer build -machine-readable`: a failed step's own words are kept apart from what
Packer and its builders say around them, so that a failure's message says why."""

from __future__ import annotations

import stat
from pathlib import Path

from goldenimage.runner.packer import Build
from goldenimage.runner.scrub import Scrubber

# A googlecompute build whose shell provisioner failed, then the builder's clean-up, as Packer
# 1.6.6 prints it (stderr of a remote command comes as "error" lines under the build's name).
TRANSCRIPT = r"""1,,ui,say,==> googlecompute.gcp: Provisioning with shell script: /tmp/packer-shell1
1,,ui,message,    googlecompute.gcp: Reading package lists...
1,,ui,error,==> googlecompute.gcp: E: Unable to locate package web-stack
1,,ui,say,==> googlecompute.gcp: Provisioning step had errors: Running the cleanup provisioner%!(PACKER_COMMA) ...
1,,ui,say,==> googlecompute.gcp: Deleting instance...
1,,ui,message,    googlecompute.gcp: Instance has been deleted!
1,,ui,say,==> googlecompute.gcp: Deleting disk...
1,,ui,message,    googlecompute.gcp: Disk has been deleted!
1,,ui,error,Build 'googlecompute.gcp' errored after 3 seconds: Script exited with non-zero exit status: 100
1,,error,Script exited with non-zero exit status: 100
"""


def test_a_failed_provisioners_words_are_kept_and_the_clean_up_after_it_is_not(tmp_path: Path) -> None:
    (tmp_path / "transcript").write_text(TRANSCRIPT)
    # A stand-in for packer that prints the transcript, whatever it is asked.
    packer = tmp_path / "packer"
    packer.write_text(f"#!/bin/sh\ncat '{tmp_path / 'transcript'}'\nexit 1\n")
    packer.chmod(packer.stat().st_mode | stat.S_IXUSR)
    said: list[str] = []
    build = Build(
        str(packer), tmp_path / "t.pkr.hcl", {}, {"PATH": "/usr/bin:/bin"}, tmp_path, Scrubber([]), said.append
    )

    out = build.run()

    assert out.returncode == 1
    assert out.remote == ["Reading package lists...", "E: Unable to locate package web-stack"]
    assert out.errors == ["Script exited with non-zero exit status: 100"]
    assert "==> googlecompute.gcp: Deleting disk..." in said  # everything is still shown
