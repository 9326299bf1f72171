# Rendered by the GoldenImage operator for platform/web-base-7, target gcp-eu.
# Build id web-base-7-1a2b3c4d. Do not edit: the ImageBuild's recipe is the source.

variable "attempt" {
  type    = string
  default = "1"
}

# Where the build's input files are.
variable "inputs_dir" {
  type = string
}

variable "manifest_path" {
  type = string
}

# Credentials JSON from the Secret's GOOGLE_CREDENTIALS; empty: Application Default Credentials.
variable "gcp_credentials" {
  type      = string
  default   = env("GOOGLE_CREDENTIALS")
  sensitive = true
}

locals {
  resource_tags = {
    "role"                         = "web"
    "goldenimage-io_build-id"      = "web-base-7-1a2b3c4d"
    "goldenimage-io_image"         = "web-base"
    "goldenimage-io_namespace"     = "platform"
    "goldenimage-io_version"       = "7"
    "goldenimage-io_target"        = "gcp-eu"
    "app-kubernetes-io_managed-by" = "goldenimage-operator"
    "goldenimage-io_attempt"       = var.attempt
  }
}

source "googlecompute" "gcp-eu" {
  project_id              = "platform-images"
  zone                    = "europe-west1-b"
  machine_type            = "e2-medium"
  account_file            = var.gcp_credentials
  source_image_family     = "debian-12"
  source_image_project_id = ["debian-cloud"]
  image_name              = "web-base-7-1a2b3c4d-gcp-eu-a${var.attempt}"
  image_description       = "web-base version 7 (build web-base-7-1a2b3c4d)"
  image_labels            = local.resource_tags
  labels                  = local.resource_tags
  image_storage_locations = ["europe-west1"]
  instance_name           = "packer-web-base-7-1a2b3c4d-gcp-eu-a${var.attempt}"
  communicator            = "ssh"
  ssh_username            = "packer"
  ssh_timeout             = "20m"
  use_internal_ip         = true
}

build {
  name    = "gcp-eu"
  sources = ["source.googlecompute.gcp-eu"]

  provisioner "shell" {
    script = "${var.inputs_dir}/p0-inline.sh"
  }

  provisioner "ansible" {
    playbook_file = "${var.inputs_dir}/p1-playbook.yml"
    user          = "packer"
    ansible_env_vars = [
      "ANSIBLE_HOST_KEY_CHECKING=False",
      "ANSIBLE_NOCOLOR=True",
      "ANSIBLE_SSH_ARGS=-o HostKeyAlgorithms=+ssh-rsa -o PubkeyAcceptedKeyTypes=+ssh-rsa",
    ]
  }

  provisioner "file" {
    source      = "${var.inputs_dir}/p2-file"
    destination = "/tmp/goldenimage-p2"
  }

  provisioner "shell" {
    inline = [
      "sudo install -D -m 0644 /tmp/goldenimage-p2 '/etc/motd'",
      "rm -f /tmp/goldenimage-p2",
    ]
  }

  # Generalize: no machine identity, host keys, authorized keys or shell history in the image.
  provisioner "shell" {
    inline = [
      "set -eu",
      "if command -v cloud-init >/dev/null 2>&1; then cloud-init clean --logs --seed || cloud-init clean --logs; fi",
      "truncate -s 0 /etc/machine-id",
      "rm -f /var/lib/dbus/machine-id",
      "rm -f /etc/ssh/ssh_host_*",
      "find /root /home -path '*/.ssh/authorized_keys' -type f -delete 2>/dev/null || true",
      "find /root /home -maxdepth 2 -name '.*_history' -type f -delete 2>/dev/null || true",
      "rm -rf /tmp/* /var/tmp/*",
    ]
    execute_command = "chmod +x {{ .Path }}; sudo sh '{{ .Path }}'"
  }

  post-processor "manifest" {
    output     = var.manifest_path
    strip_path = true
  }
}
