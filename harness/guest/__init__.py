"""The guest: one QEMU running a profile's kernel with a small initramfs.

`harness.guest.vm.Guest` owns a running guest (serial console, SSH, crash watcher);
`harness.guest.image` builds the initramfs it boots.  This package's `__init__`
imports nothing, so light users (e.g. `harness.guest.result`) do not pull in
paramiko or pexpect.
"""
