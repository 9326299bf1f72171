"""What gets baked in and what gets scrubbed out, on real machines: each provisioner leaves its
mark in the image, the generalize step leaves no machine identity, keys or history, a secret
written to disk fails the build through the scan, and a failing provisioner fails the attempt
with its own message."""

from __future__ import annotations

import pytest

from goldenimage.api import labels
from goldenimage_dev.aws import CLOUD_INIT_DEBIAN12, NEWEST_DEBIAN12
from goldenimage_dev.stack import Stack
from support.builds import wait_settled
from support.cluster import Cluster, condition_of
from support.manifests import golden_image

pytestmark = pytest.mark.e2e

PLAYBOOK = """\
- hosts: all
  become: true
  tasks:
    - ansible.builtin.copy:
        dest: /etc/ansible-mark
        content: "{{ mark }}\\n"
"""


def test_provisioners_leave_their_marks_and_generalize_scrubs_the_rest(stack: Stack, cluster: Cluster, ns: str) -> None:
    cluster.kubectl("create", "configmap", "marks", "-n", ns, f"--from-literal=mark.yml={PLAYBOOK}")
    cluster.apply(
        golden_image(
            "marked",
            # A cloud-init image, so that generalizing has cloud-init's state to clean.
            target={"region": "eu-west-1", "source": {"amiId": CLOUD_INIT_DEBIAN12}},
            provisioners=[
                {"shell": {"inline": ['echo "$MARK" | sudo tee /etc/shell-mark'], "env": {"MARK": "from shell"}}},
                {"file": {"source": {"inline": "from file\n"}, "destination": "/etc/file-mark", "mode": "0600"}},
                {
                    "ansible": {
                        "playbook": {"configMapRef": {"name": "marks", "key": "mark.yml"}},
                        "extraVars": {"mark": "from ansible"},
                    }
                },
                # History to scrub: what an interactive session would have left.
                {
                    "shell": {
                        "inline": ["echo 'ls /' >> ~/.bash_history", "sudo sh -c 'echo id >> /root/.bash_history'"]
                    }
                },
            ],
        ),
        ns,
    )
    build = wait_settled(cluster, ns, "marked-1")
    built = condition_of(build, "Built")
    assert built and built["status"] == "True", built
    (artifact,) = build["status"]["targets"][0]["artifacts"]
    image = stack.clouds.aws_machine_image(artifact["id"])

    def run(*argv: str) -> str:
        code, out = stack.clouds.run_in_image(image, list(argv))
        assert code == 0, (argv, out)
        return out

    assert run("cat", "/etc/shell-mark") == "from shell\n"
    assert run("cat", "/etc/file-mark") == "from file\n"
    assert run("stat", "-c", "%a %U", "/etc/file-mark") == "600 root\n"
    assert run("cat", "/etc/ansible-mark") == "from ansible\n"
    # Generalized: no machine identity, host keys, keys that could log in, history or cloud-init state.
    assert run("stat", "-c", "%s", "/etc/machine-id") == "0\n"
    assert run("sh", "-c", "ls /etc/ssh/ssh_host_* 2>/dev/null | wc -l") == "0\n"
    assert run("sh", "-c", "find /root /home -name authorized_keys | wc -l") == "0\n"
    assert run("sh", "-c", "find /root /home -maxdepth 2 -name '.*_history' | wc -l") == "0\n"
    assert run("sh", "-c", "ls -A /var/lib/cloud/instances /var/lib/cloud/instance 2>/dev/null | wc -l") == "0\n"


def test_a_secret_written_into_the_image_fails_the_build(stack: Stack, cluster: Cluster, ns: str) -> None:
    secret = "s3cret-registry-token-4711"
    cluster.kubectl("create", "secret", "generic", "registry", "-n", ns, f"--from-literal=token={secret}")
    cluster.apply(
        golden_image(
            "leaky",
            target={"region": "eu-west-1", "source": {"amiId": NEWEST_DEBIAN12}},
            secretVariables=[{"name": "registry_token", "secretKeyRef": {"name": "registry", "key": "token"}}],
            provisioners=[
                {
                    "shell": {
                        # Using the secret is fine; leaving it on disk is not.
                        "inline": ['echo "token=$TOKEN" | sudo tee /etc/registry.conf >/dev/null'],
                        "secretEnv": {"TOKEN": "registry_token"},
                    }
                }
            ],
            build={"maxAttempts": 1},
        ),
        ns,
    )
    build = wait_settled(cluster, ns, "leaky-1")
    (target,) = build["status"]["targets"]
    assert target["phase"] == "Failed", target
    assert "the value of secret variable registry_token was found" in target["message"]
    assert secret not in str(build)
    # No image was captured, and the builder machine is gone.
    identity = labels.BUILD_ID
    images = stack.aws.ec2("eu-west-1").describe_images(
        Owners=["self"], Filters=[{"Name": f"tag:{identity}", "Values": [build["metadata"]["name"] + "*"]}]
    )["Images"]
    assert images == []


def test_a_failing_provisioner_fails_the_attempt_with_its_message(stack: Stack, cluster: Cluster, ns: str) -> None:
    cluster.apply(
        golden_image(
            "broken-step",
            target={"region": "eu-west-1", "source": {"amiId": NEWEST_DEBIAN12}},
            provisioners=[{"shell": {"inline": ["echo 'E: Unable to locate package web-stack' >&2", "exit 100"]}}],
            build={"maxAttempts": 1},
        ),
        ns,
    )
    build = wait_settled(cluster, ns, "broken-step-1")
    (target,) = build["status"]["targets"]
    assert (target["phase"], target["errorClass"]) == ("Failed", "Retryable"), target
    assert "non-zero exit status: 100" in target["message"], target["message"]
    assert "E: Unable to locate package web-stack" in target["message"], target["message"]
    ready = condition_of(build, "Ready")
    assert ready and ready["reason"] == "BuildFailed" and "non-zero exit status: 100" in ready["message"]
