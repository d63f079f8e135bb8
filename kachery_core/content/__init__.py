"""What an object *is*: content URIs, hashes, manifests and the directory format.

Pure functions over bytes and text, with no storage and no network: the node, every
backend and the client parse and check content here, so each rule has one home.
"""
