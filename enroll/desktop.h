/*
 * desktop.h — desktop notifications on the session bus with the "Renew
 * now" action (desktop.c, docs/enrollment.md "Desktop notifications").
 */
#ifndef EVERTOKEN_ENROLL_DESKTOP_H
#define EVERTOKEN_ENROLL_DESKTOP_H

#include <stddef.h>

#include "enr_int.h"

/* Show EV for P (PROBLEM: urgency critical, replaces the profile's notice,
 * "Renew now" offered when the service listens and the server has actions;
 * otherwise the profile's problem notice is withdrawn first). Nothing
 * without a session bus or a notification server. */
void enr_desktop_notify(const enr_profile *p, enr_state *st, const enr_event *ev, int problem);
/* The service: listen for the actions of its notices (0), or -1 without a
 * session bus. */
int enr_desktop_listen(void);
/* Wait up to SECONDS (at most 1 while an unlock is under way), returning
 * early when an action was chosen or a notice closed (a plain sleep when not
 * listening). */
void enr_desktop_wait(long seconds);
/* Carry out the chosen actions for the profiles V[0..N): "Renew now" starts
 * `evertoken unlock` when the token needs a login (the check follows in a
 * later call, once it ended), else runs the check; forget the notices the
 * server closed. 1 when a check ran. */
int enr_desktop_actions(enr_ctx *ctx, enr_profile **v, size_t n);
/* Close the session bus connection (end of the program). */
void enr_desktop_close(void);

#endif
