"""Amazon Web Services: `kind` is what is pure (the Packer source block, regions, tags, Jobs),
`adapter` talks to EC2 and SSM through boto3, `publish` writes the channel pointers."""
