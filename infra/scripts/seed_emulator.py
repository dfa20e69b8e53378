"""Makes the sample templates launchable on the moto emulator.

The sample templates name placeholder AWS ids (subnet-0a1b…, sg-0a1b…, ami-0123…, an instance
profile and a Spot Fleet role in account 123456789012). This script creates matching resources in
the emulator (a VPC with one subnet per placeholder subnet across availability zones, security
groups, key pairs, IAM instance profiles and roles, an emulator AMI of the right architecture) and
writes copies of the template files with the placeholders replaced by the emulator's ids.

Usage: seed_emulator.py <templates folder> <output folder>
It only talks to a loopback AWS_ENDPOINT_URL: it refuses anything else, so it can never touch a
real account.
"""

import json
import os
import pathlib
import re
import sys
from urllib.parse import urlparse

import boto3
from botocore.exceptions import ClientError

ARCHITECTURES = {"X86_64": "x86_64", "LINUX_ARM64": "arm64", "ARM64": "arm64"}


def emulator_endpoint():
    url = os.environ.get("AWS_ENDPOINT_URL", "")
    if urlparse(url).hostname not in ("127.0.0.1", "localhost"):
        sys.exit(f"seed_emulator: AWS_ENDPOINT_URL={url!r} is not a loopback emulator; refusing to seed")
    return url


def templates_of(folder):
    """Every template file of the folder with its parsed document (JSON files only)."""
    for path in sorted(pathlib.Path(folder).glob("*templates.json")):
        yield path, json.loads(path.read_text())


def placeholders(document, pattern):
    return sorted(set(re.findall(pattern, json.dumps(document))))


def create_network(ec2, subnet_ids, group_ids):
    """A VPC, one subnet per placeholder (spread over the zones), one security group per placeholder."""
    vpc = ec2.create_vpc(CidrBlock="10.42.0.0/16")["Vpc"]["VpcId"]
    zones = [z["ZoneName"] for z in ec2.describe_availability_zones()["AvailabilityZones"]]
    mapping = {}
    for index, placeholder in enumerate(subnet_ids):
        subnet = ec2.create_subnet(
            VpcId=vpc, CidrBlock=f"10.42.{index * 16}.0/20", AvailabilityZone=zones[index % len(zones)]
        )
        mapping[placeholder] = subnet["Subnet"]["SubnetId"]
    for placeholder in group_ids:
        group = ec2.create_security_group(GroupName=f"hostfactory-{placeholder}", Description="hostfactory sample", VpcId=vpc)
        mapping[placeholder] = group["GroupId"]
    return mapping


def image_for(ec2, architecture):
    images = ec2.describe_images(Owners=["amazon"], Filters=[{"Name": "architecture", "Values": [architecture]}])["Images"]
    if not images:
        sys.exit(f"seed_emulator: the emulator offers no {architecture} image")
    return sorted(images, key=lambda image: image["ImageId"])[0]["ImageId"]


def ensure(call, **kwargs):
    """Creates an IAM/EC2 resource, tolerating one that exists already (a restarted serve)."""
    try:
        call(**kwargs)
    except ClientError as error:
        if error.response["Error"]["Code"] not in ("EntityAlreadyExists", "InvalidKeyPair.Duplicate"):
            raise


def create_identities(iam, ec2, document):
    text = json.dumps(document)
    for name in sorted(set(re.findall(r"instance-profile/([\w+=,.@-]+)", text))):
        ensure(iam.create_instance_profile, InstanceProfileName=name)
    for path, name in sorted(set(re.findall(r"arn:aws:iam::\d+:role(/(?:[\w.-]+/)*)([\w+=,.@-]+)", text))):
        policy = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Principal": {"Service": "spotfleet.amazonaws.com"}, "Action": "sts:AssumeRole"}]}
        ensure(iam.create_role, Path=path, RoleName=name, AssumeRolePolicyDocument=json.dumps(policy))
    for name in sorted(set(re.findall(r'"keyName":\s*"([^"]+)"', text))):
        ensure(ec2.create_key_pair, KeyName=name)


def render(document, mapping, images):
    for template in document.get("templates", []):
        architecture = template.get("attributes", {}).get("type", ["String", "X86_64"])[1]
        if "imageId" in template:
            template["imageId"] = images[ARCHITECTURES.get(architecture, "x86_64")]
    text = json.dumps(document, indent=2)
    for placeholder, real in mapping.items():
        text = text.replace(placeholder, real)
    return text + "\n"


def main(source, target):
    endpoint = emulator_endpoint()
    session = boto3.session.Session(region_name=os.environ.get("AWS_REGION", "us-east-1"))
    ec2 = session.client("ec2", endpoint_url=endpoint)
    iam = session.client("iam", endpoint_url=endpoint)
    files = list(templates_of(source))
    everything = [document for _, document in files]
    mapping = create_network(
        ec2, placeholders(everything, r"subnet-[0-9a-f]{17}"), placeholders(everything, r"sg-[0-9a-f]{17}")
    )
    images = {arch: image_for(ec2, arch) for arch in ("x86_64", "arm64")}
    create_identities(iam, ec2, everything)
    out = pathlib.Path(target)
    out.mkdir(parents=True, exist_ok=True)
    for path, document in files:
        (out / path.name).write_text(render(document, mapping, images))
    print(f"seeded the emulator: {len(mapping)} network ids, images {images}; templates in {out}", file=sys.stderr)


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    main(sys.argv[1], sys.argv[2])
