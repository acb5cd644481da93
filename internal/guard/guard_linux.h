// argv[1] of the guard face; internal/guard's Arg is the same string.
#define AK_GUARD_ARG "__autokill_guard"
