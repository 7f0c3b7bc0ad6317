/*
 * tap.h - a minimal TAP producer for the C unit tests, read by prove(1).
 *
 * ok(cond, fmt, ...) prints "ok N - name" or "not ok N - name"; done()
 * prints the plan and returns the exit status (non-zero if any failed).
 */
#ifndef MGATE_TAP_H
#define MGATE_TAP_H

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

static int tap_n, tap_failed;

static int __attribute__((format(printf, 2, 3), unused))
ok(int cond, const char *fmt, ...)
{
	va_list ap;

	printf("%sok %d - ", cond ? "" : "not ", ++tap_n);
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	printf("\n");
	fflush(stdout);
	if (!cond)
		tap_failed++;
	return cond;
}

static void __attribute__((format(printf, 1, 2), unused))
diag(const char *fmt, ...)
{
	va_list ap;

	printf("# ");
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	printf("\n");
}

#define is_int(a, b, ...) \
	(ok((long long)(a) == (long long)(b), __VA_ARGS__) ? 1 : \
	 (diag("  got %lld, expected %lld", (long long)(a), (long long)(b)), 0))
#define is_str(a, b, ...) \
	(ok((a) != NULL && (b) != NULL && strcmp((a), (b)) == 0, __VA_ARGS__) ? \
	 1 : (diag("  got '%s', expected '%s'", (a) ? (a) : "(null)", \
	 (b) ? (b) : "(null)"), 0))

static int __attribute__((unused))
done(void)
{
	printf("1..%d\n", tap_n);
	return tap_failed != 0;
}

#endif
