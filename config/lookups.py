"""`field__any_of=[...]`: membership in a long list of values, sent to PostgreSQL as ONE array
parameter (`= ANY(%s)`) instead of `IN (%s, %s, ...)` with a placeholder per value. For the 2,000-id
batches of campaign audiences, Django's per-value processing of IN and psycopg's parsing of the long
query string took a fifth of a 100,000-recipient dry run. Other databases get the ordinary IN."""

from django.db.models import CharField, IntegerField, lookups


class AnyOf(lookups.In):
    lookup_name = "any_of"

    def as_postgresql(self, compiler, connection):
        lhs, lhs_params = self.process_lhs(compiler, connection)
        values = [value for value in self.rhs if value is not None]
        return f"{lhs} = ANY(%s)", [*lhs_params, values]


# Integer fields (BigIntegerField and AutoField included) and text fields; not foreign keys, whose
# lookups Django resolves through the related model.
IntegerField.register_lookup(AnyOf)
CharField.register_lookup(AnyOf)
