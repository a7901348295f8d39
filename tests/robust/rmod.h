/*
 * White-box robust tests (built with the module's objects, so they can
 * look at its cache): the module's token state for a slot.
 */
#ifndef EVERTOKEN_RMOD_H
#define EVERTOKEN_RMOD_H

#include "mod_int.h"
#include "rlib.h"

/* The module's token of SLOT (fails the test if there is none). */
static inline struct mod_token *
r_mod_token(CK_SLOT_ID slot)
{
    for (struct mod_token *t = mod_g.tokens; t != NULL; t = t->next)
        if (t->slot == (uint32_t)slot)
            return t;
    r_fail("no token for slot %lu", (unsigned long)slot);
}

#endif /* EVERTOKEN_RMOD_H */
