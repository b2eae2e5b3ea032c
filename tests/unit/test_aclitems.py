"""ACL items exploded by the catalog group back per grantee and grantor, in their order, with grant options."""

from __future__ import annotations

from pgmove.state.models import AclItem
from pgmove.steps import aclitems


def test_acl_items_group_per_grantee_and_grantor_in_their_order_with_grant_options():
    """Exploded ACL rows group back into one item per grantee and grantor, in their order, with * after a privilege
    held with grant option."""
    exploded = [[16384, 10, "SELECT", False], [16384, 10, "UPDATE", True], [0, 10, "USAGE", False],
                [10, 10, "SELECT", False]]
    assert aclitems.items(exploded) == [AclItem(grantee=16384, grantor=10, privileges="rw*"),
                                        AclItem(grantee=0, grantor=10, privileges="U"),
                                        AclItem(grantee=10, grantor=10, privileges="r")]
    assert aclitems.items(None) is None
