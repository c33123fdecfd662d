# Loss models: the engine's half of emulator.model.loss. Each model is a number
# (its row in LOSS_KINDS there), the probabilities that row names, and a case
# in loss_drops below. Adding a model: a row there, a case here (and its states).
# Stage 2 of the per-packet pipeline (direction.pxi's order) calls loss_drops.

# Loss models, in emulator.model.loss.LOSS_KINDS order.
cdef enum:
    LOSS_NONE = 0
    LOSS_RANDOM = 1
    LOSS_GEMODEL = 2
    LOSS_STATE = 3
    LOSS_COUNT = 4
    LOSS_PARAMS = 5          # loss_p: the most any model takes (netem's 4-state: p13 p31 p32 p23 p14)

# The models' states, kept per direction across parameter changes: Gilbert–Elliott's
# two and netem's four (the 4-state model, finding a state not its own, starts from its first).
cdef enum:
    LOSS_STATE_INITIAL = 0
    GE_GOOD = 0
    GE_BAD = 1
    ST_TX_GAP = 1        # netem TX_IN_GAP_PERIOD
    ST_TX_BURST = 2      # netem TX_IN_BURST_PERIOD
    ST_LOST_BURST = 3    # netem LOST_IN_BURST_PERIOD
    ST_LOST_GAP = 4      # netem LOST_IN_GAP_PERIOD


cdef struct LossParams:
    int kind
    double p[LOSS_PARAMS]


cdef int loss_params_read(LossParams *m, object kind, object probabilities) except -1:
    """Fill `m` from LossModel.to_engine()'s loss_kind and loss_p (EngineParamError if they do not fit)."""
    cdef int i
    m.kind = enum_field(kind, "loss_kind", LOSS_COUNT)
    if len(probabilities) != LOSS_PARAMS:
        raise EngineParamError(f"engine parameter loss_p has {len(probabilities)} values, not {LOSS_PARAMS}")
    for i in range(LOSS_PARAMS):
        m.p[i] = double_field(probabilities[i], "loss_p")
    return 0


cdef inline bint loss_drops(const LossParams *m, int *state, Prng *rng) noexcept nogil:
    """True when the loss model drops this packet (netem's sch_netem.c logic)."""
    cdef double rnd
    if m.kind == LOSS_RANDOM:
        return prng_chance(rng, m.p[0])
    if m.kind == LOSS_GEMODEL:
        # p = P(G->B), r = P(B->G), 1-h = loss in B, 1-k = loss in G.
        # As in netem, the transition is drawn first and the loss decision
        # uses the state the packet found on arrival.
        if state[0] == GE_GOOD:
            if prng_uniform(rng) < m.p[0]:
                state[0] = GE_BAD
            return prng_uniform(rng) < m.p[3]
        if prng_uniform(rng) < m.p[1]:
            state[0] = GE_GOOD
        return prng_uniform(rng) < m.p[2]
    if m.kind == LOSS_STATE:
        # loss_p = (p13, p31, p32, p23, p14); netem's a1..a5 = p13, p31, p32, p14, p23.
        if state[0] < ST_TX_GAP or state[0] > ST_LOST_GAP:
            state[0] = ST_TX_GAP
        rnd = prng_uniform(rng)
        if state[0] == ST_TX_GAP:
            if rnd < m.p[4]:
                state[0] = ST_LOST_GAP
                return True
            elif rnd < m.p[4] + m.p[0]:
                state[0] = ST_LOST_BURST
                return True
            return False
        elif state[0] == ST_TX_BURST:
            if rnd < m.p[3]:
                state[0] = ST_LOST_BURST
                return True
            return False
        elif state[0] == ST_LOST_BURST:
            # p32 back to a burst's transmissions, p31 back to the gap,
            # otherwise (1 - p31 - p32) the burst goes on: lose this one too.
            if rnd < m.p[2]:
                state[0] = ST_TX_BURST
                return False
            elif rnd < m.p[1] + m.p[2]:
                state[0] = ST_TX_GAP
                return False
            return True
        else:  # ST_LOST_GAP: one isolated loss, then back to the gap
            state[0] = ST_TX_GAP
            return False
    return False
