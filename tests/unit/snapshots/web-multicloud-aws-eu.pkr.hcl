# Rendered by the GoldenImage operator for platform/web-base-7, target aws-eu.
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

# Custom EC2 endpoint.
variable "aws_endpoint" {
  type    = string
  default = ""
}

locals {
  resource_tags = {
    "role"                         = "web"
    "goldenimage.io/build-id"      = "web-base-7-1a2b3c4d"
    "goldenimage.io/image"         = "web-base"
    "goldenimage.io/namespace"     = "platform"
    "goldenimage.io/version"       = "7"
    "goldenimage.io/target"        = "aws-eu"
    "app.kubernetes.io/managed-by" = "goldenimage-operator"
    "goldenimage.io/attempt"       = var.attempt
  }
}

source "amazon-ebs" "aws-eu" {
  region                  = "eu-west-1"
  source_ami              = "ami-0a1b2c3d4e5f60718"
  instance_type           = "t3.medium"
  ami_name                = "web-base-7-1a2b3c4d-aws-eu-a${var.attempt}"
  ami_description         = "web-base version 7 (build web-base-7-1a2b3c4d)"
  ami_regions             = ["eu-central-1", "us-east-1"]
  shutdown_behavior       = "terminate"
  custom_endpoint_ec2     = var.aws_endpoint
  ami_users               = ["111122223333"]
  tags                    = local.resource_tags
  snapshot_tags           = local.resource_tags
  run_tags                = local.resource_tags
  run_volume_tags         = local.resource_tags
  temporary_key_pair_name = "packer-web-base-7-1a2b3c4d-aws-eu-a${var.attempt}"
  communicator            = "ssh"
  ssh_username            = "admin"
  ssh_timeout             = "20m"
  ssh_interface           = "private_ip"
}

build {
  name    = "aws-eu"
  sources = ["source.amazon-ebs.aws-eu"]

  provisioner "shell" {
    script = "${var.inputs_dir}/p0-inline.sh"
  }

  provisioner "ansible" {
    playbook_file = "${var.inputs_dir}/p1-playbook.yml"
    user          = "admin"
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
