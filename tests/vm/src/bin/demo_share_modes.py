# Share modes across nodes, for the ctdb-rs demo (tests/vm/src/bin/demo.rs runs
# it in the client namespace with /usr/bin/python3). It uses Samba's own Python
# client bindings (python3-samba, which the samba package depends on), so the
# demo needs nothing beyond Samba.
#
#     demo_share_modes.py USER PASSWORD ADDRESS_A ADDRESS_B FILE
#
# Client A connects through ADDRESS_A and opens FILE for reading and writing,
# letting others only read (deny write). Client B connects through ADDRESS_B
# and asks to open FILE for writing; then A closes and B asks again. One line
# per step on standard output, "STEP RESULT", where RESULT is "granted" or the
# NT status name (or code) of the refusal:
#     a-open granted
#     b-open NT_STATUS_SHARING_VIOLATION
#     a-close granted
#     b-open-again granted
import sys

from samba import NTSTATUSError, credentials, ntstatus
from samba.dcerpc import security
from samba.samba3 import libsmb_samba_internal as libsmb
from samba.samba3 import param as s3param

# CreateDisposition values of SMB2 CREATE.
FILE_OPEN = 1
FILE_OPEN_IF = 3


def status_name(code):
    for name in dir(ntstatus):
        if name.startswith("NT_STATUS_") and getattr(ntstatus, name) == code:
            return name
    return "0x%08x" % (code & 0xFFFFFFFF)


def step(name, action):
    """Runs action; prints the step's result; returns action's value or None."""
    try:
        value = action()
    except NTSTATUSError as e:
        print(name, status_name(e.args[0]), flush=True)
        return None
    print(name, "granted", flush=True)
    return value


def main():
    user, password, address_a, address_b, name = sys.argv[1:6]
    lp = s3param.get_context()
    lp.load("/dev/null")
    creds = credentials.Credentials()
    creds.guess(lp)
    creds.set_username(user)
    creds.set_password(password)
    a = libsmb.Conn(address_a, "share", lp, creds)
    b = libsmb.Conn(address_b, "share", lp, creds)

    def open_deny_write():
        return a.create(
            name,
            DesiredAccess=security.SEC_FILE_READ_DATA | security.SEC_FILE_WRITE_DATA,
            ShareAccess=libsmb.FILE_SHARE_READ,
            CreateDisposition=FILE_OPEN_IF,
        )

    def open_for_write():
        return b.create(
            name,
            DesiredAccess=security.SEC_FILE_WRITE_DATA,
            ShareAccess=libsmb.FILE_SHARE_READ | libsmb.FILE_SHARE_WRITE,
            CreateDisposition=FILE_OPEN,
        )

    held = step("a-open", open_deny_write)
    if held is None:
        return 1
    refused = step("b-open", open_for_write)
    if refused is not None:
        b.close(refused)
    step("a-close", lambda: a.close(held))
    again = step("b-open-again", open_for_write)
    if again is not None:
        b.close(again)
    return 0


if __name__ == "__main__":
    sys.exit(main())
