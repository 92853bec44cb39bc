"""The Butcher tableaus of flowkit's native explicit Runge-Kutta methods, as data.

Fixed step: :data:`EULER` (1), :data:`MIDPOINT` (2), :data:`HEUN` (2),
:data:`RALSTON` (2), :data:`RK4` (4, classic), :data:`RK4_38` (4, 3/8 rule).
Embedded pairs: :data:`HEUN_EULER` (2/1), :data:`BOSH3` (3/2), :data:`DOPRI5`
(5/4, with dense output), :data:`TSIT5` (5/4), :data:`DOPRI8` (8/5/3, DOP853).
The integrator classes and their registration are in
``plugins/native_integrators.py``.

References:
    E. Hairer, S. P. Nørsett, G. Wanner, *Solving Ordinary Differential
    Equations I*, 2nd ed., Springer, 1993 (Euler, midpoint, Heun, RK4, the 3/8
    rule, DOPRI5 with its dense output, DOP853).
    A. Ralston, "Runge-Kutta methods with minimum error bounds", Math. Comp. 16, 1962.
    P. Bogacki, L. F. Shampine, "A 3(2) pair of Runge-Kutta formulas",
    Appl. Math. Lett. 2(4), 1989.
    J. R. Dormand, P. J. Prince, "A family of embedded Runge-Kutta formulae",
    J. Comput. Appl. Math. 6(1), 1980.
    L. F. Shampine, "Some practical Runge-Kutta formulas", Math. Comp. 46(173),
    1986 (the embedded error estimate of ``dopri5``).
    Ch. Tsitouras, "Runge-Kutta pairs of order 5(4) satisfying only the first
    column simplifying assumption", Comput. Math. Appl. 62(2), 2011.
"""

from __future__ import annotations

from fractions import Fraction as F  # noqa: N817  (compact rational literals)

from flowkit.rk.tableau import ButcherTableau, dense_from_hermite_quartic

__all__ = [
    "BOSH3",
    "DOPRI5",
    "DOPRI8",
    "EULER",
    "HEUN",
    "HEUN_EULER",
    "MIDPOINT",
    "RALSTON",
    "RK4",
    "RK4_38",
    "TSIT5",
]


def _f(*xs: object) -> tuple[float, ...]:
    return tuple(float(x) for x in xs)  # type: ignore[arg-type]


def _sub(u: tuple[float, ...], v: tuple[float, ...]) -> tuple[float, ...]:
    return tuple(a - b for a, b in zip(u, v, strict=True))


# -- fixed-step tableaus ------------------------------------------------------
EULER = ButcherTableau("euler", c=(0.0,), a=((),), b=(1.0,), order=1)
MIDPOINT = ButcherTableau("midpoint", c=(0.0, 0.5), a=((), (0.5,)), b=(0.0, 1.0), order=2)
HEUN = ButcherTableau("heun", c=(0.0, 1.0), a=((), (1.0,)), b=(0.5, 0.5), order=2)
RALSTON = ButcherTableau(
    "ralston", c=_f(0, F(2, 3)), a=((), _f(F(2, 3))), b=_f(F(1, 4), F(3, 4)), order=2
)
RK4 = ButcherTableau(
    "rk4",
    c=(0.0, 0.5, 0.5, 1.0),
    a=((), (0.5,), (0.0, 0.5), (0.0, 0.0, 1.0)),
    b=_f(F(1, 6), F(1, 3), F(1, 3), F(1, 6)),
    order=4,
)
RK4_38 = ButcherTableau(
    "rk4_38",
    c=_f(0, F(1, 3), F(2, 3), 1),
    a=((), _f(F(1, 3)), _f(F(-1, 3), 1), _f(1, -1, 1)),
    b=_f(F(1, 8), F(3, 8), F(3, 8), F(1, 8)),
    order=4,
)

# -- embedded pairs -----------------------------------------------------------
HEUN_EULER = ButcherTableau(
    "adaptive_heun",
    c=(0.0, 1.0),
    a=((), (1.0,)),
    b=(0.5, 0.5),
    order=2,
    b_error=_sub((0.5, 0.5), (1.0, 0.0)),
    error_order=1,
)

_BOSH3_B = _f(F(2, 9), F(1, 3), F(4, 9), 0)
BOSH3 = ButcherTableau(
    "bosh3",
    c=_f(0, F(1, 2), F(3, 4), 1),
    a=((), _f(F(1, 2)), _f(0, F(3, 4)), _BOSH3_B[:3]),
    b=_BOSH3_B,
    order=3,
    b_error=_sub(_BOSH3_B, _f(F(7, 24), F(1, 4), F(1, 3), F(1, 8))),
    error_order=2,
    fsal=True,
)

_DOPRI5_B = _f(F(35, 384), 0, F(500, 1113), F(125, 192), F(-2187, 6784), F(11, 84), 0)
# The embedded fourth-order solution of Shampine (1986), as torchdiffeq and diffrax use
# it; Dormand and Prince's own (Hairer's DOPRI5 code) is
# (5179/57600, 0, 7571/16695, 393/640, -92097/339200, 187/2100, 1/40). Same propagated
# solution; Shampine's estimate is less pessimistic (fewer evaluations for a larger
# global error at the same tolerance) and gives the same steps as torchdiffeq.dopri5.
_DOPRI5_BHAT = _f(
    F(1951, 21600), 0, F(22642, 50085), F(451, 720), F(-12231, 42400), F(649, 6300), F(1, 60)
)
# Hairer's dense-output weights d_j of DOPRI5 (continuous extension of order 4).
_DOPRI5_D = _f(
    F(-12715105075, 11282082432),
    0,
    F(87487479700, 32700410799),
    F(-10690763975, 1880347072),
    F(701980252875, 199316789632),
    F(-1453857185, 822651844),
    F(69997945, 29380423),
)
DOPRI5 = ButcherTableau(
    "dopri5",
    c=_f(0, F(1, 5), F(3, 10), F(4, 5), F(8, 9), 1, 1),
    a=(
        (),
        _f(F(1, 5)),
        _f(F(3, 40), F(9, 40)),
        _f(F(44, 45), F(-56, 15), F(32, 9)),
        _f(F(19372, 6561), F(-25360, 2187), F(64448, 6561), F(-212, 729)),
        _f(F(9017, 3168), F(-355, 33), F(46732, 5247), F(49, 176), F(-5103, 18656)),
        _DOPRI5_B[:6],
    ),
    b=_DOPRI5_B,
    order=5,
    b_error=_sub(_DOPRI5_B, _DOPRI5_BHAT),
    error_order=4,
    fsal=True,
    dense=dense_from_hermite_quartic(_DOPRI5_B, _DOPRI5_D, last=6),
)

_TSIT5_B = (
    0.09646076681806523,
    0.01,
    0.4798896504144996,
    1.379008574103742,
    -3.290069515436081,
    2.324710524099774,
    0.0,
)
TSIT5 = ButcherTableau(
    "tsit5",
    c=(0.0, 0.161, 0.327, 0.9, 0.9800255409045097, 1.0, 1.0),
    a=(
        (),
        (0.161,),
        (-0.008480655492356989, 0.335480655492357),
        (2.897153057105493, -6.359448489975075, 4.3622954328695815),
        (5.325864828439257, -11.748883564062828, 7.4955393428898365, -0.09249506636175525),
        (
            5.86145544294642,
            -12.92096931784711,
            8.159367898576159,
            -0.071584973281401,
            -0.028269050394068383,
        ),
        _TSIT5_B[:6],
    ),
    b=_TSIT5_B,
    order=5,
    # b - b_hat, as published by Tsitouras (2011), Table 1.
    b_error=(
        -0.00178001105222577714,
        -0.0008164344596567469,
        0.007880878010261995,
        -0.1447110071732629,
        0.5823571654525552,
        -0.45808210592918697,
        1.0 / 66.0,
    ),
    error_order=4,
    fsal=True,
)

# DOP853 of Hairer, Nørsett & Wanner (1993): 12 stages plus the FSAL stage; a
# fifth-order and a third-order error estimate combined as in the DOP853 code.
_DOP853_C = (
    0.0,
    0.526001519587677318785587544488e-01,
    0.789002279381515978178381316732e-01,
    0.118350341907227396726757197510,
    0.281649658092772603273242802490,
    0.333333333333333333333333333333,
    0.25,
    0.307692307692307692307692307692,
    0.651282051282051282051282051282,
    0.6,
    0.857142857142857142857142857142,
    1.0,
    1.0,
)
_DOP853_A = (
    (),
    (5.26001519587677318785587544488e-2,),
    (1.97250569845378994544595329183e-2, 5.91751709536136983633785987549e-2),
    (2.95875854768068491816892993775e-2, 0.0, 8.87627564304205475450678981324e-2),
    (
        2.41365134159266685502369798665e-1,
        0.0,
        -8.84549479328286085344864962717e-1,
        9.24834003261792003115737966543e-1,
    ),
    (
        3.7037037037037037037037037037e-2,
        0.0,
        0.0,
        1.70828608729473871279604482173e-1,
        1.25467687566822425016691814123e-1,
    ),
    (
        3.7109375e-2,
        0.0,
        0.0,
        1.70252211019544039314978060272e-1,
        6.02165389804559606850219397283e-2,
        -1.7578125e-2,
    ),
    (
        3.70920001185047927108779319836e-2,
        0.0,
        0.0,
        1.70383925712239993810214054705e-1,
        1.07262030446373284651809199168e-1,
        -1.53194377486244017527936158236e-2,
        8.27378916381402288758473766002e-3,
    ),
    (
        6.24110958716075717114429577812e-1,
        0.0,
        0.0,
        -3.36089262944694129406857109825,
        -8.68219346841726006818189891453e-1,
        2.75920996994467083049415600797e1,
        2.01540675504778934086186788979e1,
        -4.34898841810699588477366255144e1,
    ),
    (
        4.77662536438264365890433908527e-1,
        0.0,
        0.0,
        -2.48811461997166764192642586468,
        -5.90290826836842996371446475743e-1,
        2.12300514481811942347288949897e1,
        1.52792336328824235832596922938e1,
        -3.32882109689848629194453265587e1,
        -2.03312017085086261358222928593e-2,
    ),
    (
        -9.3714243008598732571704021658e-1,
        0.0,
        0.0,
        5.18637242884406370830023853209,
        1.09143734899672957818500254654,
        -8.14978701074692612513997267357,
        -1.85200656599969598641566180701e1,
        2.27394870993505042818970056734e1,
        2.49360555267965238987089396762,
        -3.0467644718982195003823669022,
    ),
    (
        2.27331014751653820792359768449,
        0.0,
        0.0,
        -1.05344954667372501984066689879e1,
        -2.00087205822486249909675718444,
        -1.79589318631187989172765950534e1,
        2.79488845294199600508499808837e1,
        -2.85899827713502369474065508674,
        -8.87285693353062954433549289258,
        1.23605671757943030647266201528e1,
        6.43392746015763530355970484046e-1,
    ),
)
_DOP853_B = (
    5.42937341165687622380535766363e-2,
    0.0,
    0.0,
    0.0,
    0.0,
    4.45031289275240888144113950566,
    1.89151789931450038304281599044,
    -5.8012039600105847814672114227,
    3.1116436695781989440891606237e-1,
    -1.52160949662516078556178806805e-1,
    2.01365400804030348374776537501e-1,
    4.47106157277725905176885569043e-2,
    0.0,
)
# b - b_hat of the fifth-order estimate.
_DOP853_E5 = (
    0.1312004499419488073250102996e-1,
    0.0,
    0.0,
    0.0,
    0.0,
    -0.1225156446376204440720569753e1,
    -0.4957589496572501915214079952,
    0.1664377182454986536961530415e1,
    -0.3503288487499736816886487290,
    0.3341791187130174790297318841,
    0.8192320648511571246570742613e-1,
    -0.2235530786388629525884427845e-1,
    0.0,
)
# b - b_hat of the third-order estimate (b_hat3 nonzero at stages 0, 8, 11).
_DOP853_E3 = tuple(
    b
    - {0: 0.244094488188976377952755905512, 8: 0.733846688281611857341361741547}.get(
        j, 0.220588235294117647058823529412e-1 if j == 11 else 0.0
    )
    for j, b in enumerate(_DOP853_B)
)
DOPRI8 = ButcherTableau(
    "dopri8",
    c=_DOP853_C,
    a=(*_DOP853_A, _DOP853_B[:12]),
    b=_DOP853_B,
    order=8,
    b_error=_DOP853_E5,
    error_order=5,
    b_error2=_DOP853_E3,
    controller_order=8,
    fsal=True,
)
