// The in-house GEMM's loop (gemm_packed_tiles: A packed in 8-row tiles per block of rows, strips of
// 32 columns of B, 8 x 32 register tile) in C, to see what bounds it. ADD: C += (else C =);
// mode 0: no prefetch of C, 1: the tile's C rows prefetched for writing at its start, 2: the
// next tile's, 3: both. gcc -O2 -march=native -DADD=0 tile-microbenchmark.c; ./a.out M K N kc row_tiles mode
#include <immintrin.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#ifndef MR
#define MR 8
#endif
static double now(){struct timespec t;clock_gettime(CLOCK_MONOTONIC,&t);return t.tv_sec+1e-9*t.tv_nsec;}
static int MODE;
static inline void tile(long kc,const float*A,const float*B,float*C,long ldc,float*Cnext){
  __m512 acc[MR][2];
  if(MODE==1||MODE==3) for(int r=0;r<MR;r++){__builtin_prefetch(C+r*ldc,1,3);__builtin_prefetch(C+r*ldc+31,1,3);}
  if(MODE>=2) for(int r=0;r<MR;r++){__builtin_prefetch(Cnext+r*ldc,1,3);__builtin_prefetch(Cnext+r*ldc+31,1,3);}
  for(int r=0;r<MR;r++){acc[r][0]=_mm512_setzero_ps();acc[r][1]=_mm512_setzero_ps();}
  for(long p=0;p<kc;p++){
    __m512 b0=_mm512_loadu_ps(B+p*32), b1=_mm512_loadu_ps(B+p*32+16);
    #pragma GCC unroll 16
    for(int r=0;r<MR;r++){__m512 a=_mm512_set1_ps(A[p*MR+r]);
      acc[r][0]=_mm512_fmadd_ps(a,b0,acc[r][0]);acc[r][1]=_mm512_fmadd_ps(a,b1,acc[r][1]);}
  }
  if(ADD) for(int r=0;r<MR;r++){
    _mm512_storeu_ps(C+r*ldc,_mm512_add_ps(_mm512_loadu_ps(C+r*ldc),acc[r][0]));
    _mm512_storeu_ps(C+r*ldc+16,_mm512_add_ps(_mm512_loadu_ps(C+r*ldc+16),acc[r][1]));}
  else for(int r=0;r<MR;r++){ _mm512_storeu_ps(C+r*ldc,acc[r][0]); _mm512_storeu_ps(C+r*ldc+16,acc[r][1]);}
}
int main(int argc,char**argv){
  long M=atol(argv[1]),K=atol(argv[2]),N=atol(argv[3]),KC=atol(argv[4]),RT=atol(argv[5]); MODE=atoi(argv[6]);
  long Mt=M/MR*MR;
  float*A=aligned_alloc(64,sizeof(float)*M*K), *Ap=aligned_alloc(64,sizeof(float)*M*KC+64*MR);
  float*B=aligned_alloc(64,sizeof(float)*K*N), *C=aligned_alloc(64,sizeof(float)*(M+MR)*N);
  for(long i=0;i<M*K;i++)A[i]=1e-3f*(i%97); for(long i=0;i<K*N;i++)B[i]=1e-3f*(i%89);memset(C,0,4*M*N);
  long block=RT*MR; double best=1e9;
  for(int rep=0;rep<7;rep++){ double t0=now();
   for(long p0=0;p0<K;p0+=KC){ long kc=K-p0<KC?K-p0:KC;
    for(long i_lo=0;i_lo<Mt;i_lo+=block){ long i_hi=i_lo+block>Mt?Mt:i_lo+block;
      for(long t=0;t<(i_hi-i_lo)/MR;t++) for(long p=0;p<kc;p++) for(int r=0;r<MR;r++)
        Ap[t*MR*kc+p*MR+r]=A[(i_lo+t*MR+r)*K+p0+p];
      for(long s=0;s<N/32;s++){ const float*strip=B+(s*K+p0)*32;
        for(long i0=i_lo;i0<i_hi;i0+=MR){ float*Cn = i0+MR<i_hi? C+(i0+MR)*N+s*32 : C+i_lo*N+(s+1)*32;
          tile(kc,Ap+(i0-i_lo)*kc,strip,C+i0*N+s*32,N,Cn);}}
    }}
   double t=now()-t0; if(t<best)best=t;}
  printf("MR=%d add=%d mode=%d M=%ld K=%ld N=%ld kc=%ld rt=%ld: %.1f GF/s (%.1f%%)\n",MR,ADD,MODE,M,K,N,KC,RT,2.0*Mt*K*N/best/1e9,100*2.0*Mt*K*N/best/1e9/115.4);
}
