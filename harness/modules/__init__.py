"""Kernel modules a scenario needs: rendered from kmod_templates/ and built out of tree.

`render_modules(scenario, out_dir)` writes sources; `build_modules(scenario, profile)`
returns {module name: .ko path}, building only what the cache does not already hold.
"""
