"""Names shared by the preflight tests."""
ACCOUNT = "123456789012"  # moto's account
REGION = "us-west-2"
STACK = "prod-us-west-2"
BUCKET = f"llm-fleet-{STACK}-weights-{ACCOUNT}-{REGION}"
MANIFEST = "models/meta-llama/Llama-3.3-70B-Instruct/6f6073b423013f6a7d4d9f39144961bfbfbc386b/manifest.json"
